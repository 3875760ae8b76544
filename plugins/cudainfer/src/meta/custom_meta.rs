//! Attaching shared Rust values to buffers through GStreamer custom metas
//! (`gst_meta_register_custom`): a named meta whose structure holds one
//! boxed, reference-counted value, so copying a buffer shares the value.

use glib::value::FromValue;

const FIELD: &str = "value";

/// Registers `name` once; later calls are cheap no-ops.
pub fn register(name: &str) {
    if !gst::meta::CustomMeta::is_registered(name) {
        gst::meta::CustomMeta::register(name, &[]);
    }
}

/// Sets the value of the `name` meta (registered at plugin load) on
/// `buffer`, adding the meta if needed.
pub fn set<V: Into<glib::Value> + Send>(buffer: &mut gst::BufferRef, name: &str, value: V) {
    set_field(buffer, name, FIELD, value);
}

/// Sets `field` of the `name` meta's structure, adding the meta if needed:
/// for metas whose fields applications read themselves.
pub fn set_field<V: Into<glib::Value> + Send>(
    buffer: &mut gst::BufferRef,
    name: &str,
    field: &str,
    value: V,
) {
    if let Ok(mut meta) = gst::meta::CustomMeta::from_mut_buffer(buffer, name) {
        meta.mut_structure().set(field, value);
        return;
    }
    let mut meta = gst::meta::CustomMeta::add(buffer, name)
        .expect("custom metas are registered at plugin load");
    meta.mut_structure().set(field, value);
}

/// The value of the `name` meta on `buffer`, if present.
pub fn get<V: for<'a> FromValue<'a> + 'static>(buffer: &gst::BufferRef, name: &str) -> Option<V> {
    get_field(buffer, name, FIELD)
}

/// `field` of the `name` meta's structure on `buffer`, if present.
pub fn get_field<V: for<'a> FromValue<'a> + 'static>(
    buffer: &gst::BufferRef,
    name: &str,
    field: &str,
) -> Option<V> {
    if !gst::meta::CustomMeta::is_registered(name) {
        return None;
    }
    let meta = gst::meta::CustomMeta::from_buffer(buffer, name).ok()?;
    meta.structure().get::<V>(field).ok()
}

/// Removes the `name` meta from `buffer`; true if there was one.
pub fn remove(buffer: &mut gst::BufferRef, name: &str) -> bool {
    if !gst::meta::CustomMeta::is_registered(name) {
        return false;
    }
    match gst::meta::CustomMeta::from_mut_buffer(buffer, name) {
        Ok(meta) => meta.remove().is_ok(),
        Err(_) => false,
    }
}

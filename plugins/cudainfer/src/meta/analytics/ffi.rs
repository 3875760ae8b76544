//! The few functions of GStreamer's analytics library
//! (`libgstanalytics-1.0`, gst-plugins-bad 1.24 and later) that we need,
//! loaded at run time: the crate is built against 1.22, which has no such
//! library, and gstreamer-rs binds it only from 1.24 on. Signatures from
//! gst-libs/gst/analytics (gstanalyticsmeta.h and the od/cls/tracking mtd
//! headers), the same in 1.24 and 1.26 (1.26 only added `const`s).

use std::ffi::{c_int, c_uint, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::OnceLock;

use glib::translate::*;

use super::{AnalyticsError, Entry};

type GBoolean = c_int;
type GQuark = u32;
type GstClockTime = u64;
/// `GstAnalyticsMtdType` is a `guintptr`.
type MtdType = usize;
type Meta = c_void;

/// `GstAnalyticsMtd`: a handle to one entry of a relation meta.
#[repr(C)]
struct Mtd {
    id: c_uint,
    meta: *mut Meta,
}

impl Mtd {
    fn empty() -> Self {
        Mtd {
            id: 0,
            meta: std::ptr::null_mut(),
        }
    }
}

/// `GstAnalyticsRelationMetaInitParams`.
#[repr(C)]
struct InitParams {
    initial_relation_order: usize,
    initial_buf_size: usize,
}

/// `GST_ANALYTICS_REL_TYPE_RELATE_TO` (`1 << 3`).
const REL_TYPE_RELATE_TO: c_int = 1 << 3;
/// `GST_ANALYTICS_MTD_TYPE_ANY`.
const MTD_TYPE_ANY: MtdType = 0;

struct Library {
    _lib: libloading::Library,
    api_get_type: unsafe extern "C" fn() -> glib::ffi::GType,
    add_meta_full: unsafe extern "C" fn(*mut gst::ffi::GstBuffer, *mut InitParams) -> *mut Meta,
    get_meta: unsafe extern "C" fn(*mut gst::ffi::GstBuffer) -> *mut Meta,
    add_od: unsafe extern "C" fn(
        *mut Meta,
        GQuark,
        c_int,
        c_int,
        c_int,
        c_int,
        f32,
        *mut Mtd,
    ) -> GBoolean,
    add_cls: unsafe extern "C" fn(*mut Meta, usize, *mut f32, *mut GQuark, *mut Mtd) -> GBoolean,
    add_tracking: unsafe extern "C" fn(*mut Meta, u64, GstClockTime, *mut Mtd) -> GBoolean,
    tracking_update_last_seen: unsafe extern "C" fn(*mut Mtd, GstClockTime) -> GBoolean,
    tracking_set_lost: unsafe extern "C" fn(*mut Mtd) -> GBoolean,
    set_relation: unsafe extern "C" fn(*mut Meta, c_int, c_uint, c_uint) -> GBoolean,
    get_relation: unsafe extern "C" fn(*mut Meta, c_uint, c_uint) -> c_int,
    length: unsafe extern "C" fn(*mut Meta) -> usize,
    get_mtd: unsafe extern "C" fn(*mut Meta, c_uint, MtdType, *mut Mtd) -> GBoolean,
    mtd_type: unsafe extern "C" fn(*const Mtd) -> MtdType,
    od_type: unsafe extern "C" fn() -> MtdType,
    cls_type: unsafe extern "C" fn() -> MtdType,
    tracking_type: unsafe extern "C" fn() -> MtdType,
    od_location: unsafe extern "C" fn(
        *const Mtd,
        *mut c_int,
        *mut c_int,
        *mut c_int,
        *mut c_int,
        *mut f32,
    ) -> GBoolean,
    od_obj_type: unsafe extern "C" fn(*const Mtd) -> GQuark,
    cls_length: unsafe extern "C" fn(*const Mtd) -> usize,
    cls_level: unsafe extern "C" fn(*const Mtd, usize) -> f32,
    cls_quark: unsafe extern "C" fn(*const Mtd, usize) -> GQuark,
    tracking_info: unsafe extern "C" fn(
        *const Mtd,
        *mut u64,
        *mut GstClockTime,
        *mut GstClockTime,
        *mut GBoolean,
    ) -> GBoolean,
}

const LIBRARY_NAME: &str = "libgstanalytics-1.0.so.0";

fn library() -> Result<&'static Library, AnalyticsError> {
    static LIB: OnceLock<Result<Library, AnalyticsError>> = OnceLock::new();
    LIB.get_or_init(|| {
        let (major, minor, ..) = gst::version();
        if (major, minor) < (1, 24) {
            return Err(AnalyticsError::OldGStreamer { major, minor });
        }
        // SAFETY: loading a GStreamer library of the same installation (1.24
        // or later, checked above); the symbols are its documented API with
        // the signatures above (1.24's, unchanged in 1.26).
        unsafe {
            let lib = libloading::Library::new(LIBRARY_NAME).map_err(|e| {
                AnalyticsError::LibraryMissing {
                    library: LIBRARY_NAME,
                    reason: e.to_string(),
                }
            })?;
            macro_rules! sym {
                ($name:literal) => {
                    *lib.get(concat!($name, "\0").as_bytes()).map_err(|e| {
                        AnalyticsError::SymbolMissing {
                            library: LIBRARY_NAME,
                            symbol: $name,
                            reason: e.to_string(),
                        }
                    })?
                };
            }
            Ok(Library {
                api_get_type: sym!("gst_analytics_relation_meta_api_get_type"),
                add_meta_full: sym!("gst_buffer_add_analytics_relation_meta_full"),
                get_meta: sym!("gst_buffer_get_analytics_relation_meta"),
                add_od: sym!("gst_analytics_relation_meta_add_od_mtd"),
                add_cls: sym!("gst_analytics_relation_meta_add_cls_mtd"),
                add_tracking: sym!("gst_analytics_relation_meta_add_tracking_mtd"),
                tracking_update_last_seen: sym!("gst_analytics_tracking_mtd_update_last_seen"),
                tracking_set_lost: sym!("gst_analytics_tracking_mtd_set_lost"),
                set_relation: sym!("gst_analytics_relation_meta_set_relation"),
                get_relation: sym!("gst_analytics_relation_meta_get_relation"),
                length: sym!("gst_analytics_relation_get_length"),
                get_mtd: sym!("gst_analytics_relation_meta_get_mtd"),
                mtd_type: sym!("gst_analytics_mtd_get_mtd_type"),
                od_type: sym!("gst_analytics_od_mtd_get_mtd_type"),
                cls_type: sym!("gst_analytics_cls_mtd_get_mtd_type"),
                tracking_type: sym!("gst_analytics_tracking_mtd_get_mtd_type"),
                od_location: sym!("gst_analytics_od_mtd_get_location"),
                od_obj_type: sym!("gst_analytics_od_mtd_get_obj_type"),
                cls_length: sym!("gst_analytics_cls_mtd_get_length"),
                cls_level: sym!("gst_analytics_cls_mtd_get_level"),
                cls_quark: sym!("gst_analytics_cls_mtd_get_quark"),
                tracking_info: sym!("gst_analytics_tracking_mtd_get_info"),
                _lib: lib,
            })
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Whether relation metas can be made here; the error says why not.
pub fn available() -> Result<(), AnalyticsError> {
    library().map(|_| ())
}

/// The `GstAnalyticsRelationMeta` API type, where the library is there.
pub fn api_type() -> Option<glib::Type> {
    let lib = library().ok()?;
    // SAFETY: registers (once) and returns a GType; no arguments.
    Some(unsafe { from_glib((lib.api_get_type)()) })
}

fn quark(label: &str) -> GQuark {
    glib::Quark::from_str(label).into_glib()
}

fn label(quark: GQuark) -> String {
    // SAFETY: any GQuark value converts; 0 reads as "".
    let q: Option<glib::Quark> = unsafe { from_glib(quark) };
    q.map_or_else(String::new, |q| q.as_str().to_string())
}

fn clock_time(t: Option<gst::ClockTime>) -> GstClockTime {
    t.into_glib()
}

/// A relation meta on a buffer we may write, borrowed from it.
pub struct RelationMetaMut<'a> {
    lib: &'static Library,
    meta: NonNull<Meta>,
    _buffer: PhantomData<&'a mut gst::BufferRef>,
}

/// The buffer's relation meta, added with room for `entries` entries if it
/// has none.
pub fn relation_meta_mut(
    buffer: &mut gst::BufferRef,
    entries: usize,
) -> Result<RelationMetaMut<'_>, AnalyticsError> {
    let lib = library()?;
    // SAFETY: a valid, writable buffer (we hold it mutably).
    let existing = unsafe { (lib.get_meta)(buffer.as_mut_ptr()) };
    let ptr = match NonNull::new(existing) {
        Some(meta) => meta.as_ptr(),
        None => {
            // Room for every entry at once: the meta grows by its initial
            // size each time it is full. ~64 bytes per entry plus classes.
            let mut params = InitParams {
                initial_relation_order: entries.max(4),
                initial_buf_size: (entries * 96).max(512),
            };
            // SAFETY: a valid, writable buffer; params are read during the
            // call only.
            unsafe { (lib.add_meta_full)(buffer.as_mut_ptr(), &mut params) }
        }
    };
    let meta = NonNull::new(ptr).ok_or(AnalyticsError::AddFailed("relation meta"))?;
    Ok(RelationMetaMut {
        lib,
        meta,
        _buffer: PhantomData,
    })
}

fn check(ok: GBoolean, what: &'static str) -> Result<(), AnalyticsError> {
    if ok == 0 {
        Err(AnalyticsError::AddFailed(what))
    } else {
        Ok(())
    }
}

impl RelationMetaMut<'_> {
    /// Adds an object-detection entry; returns its id.
    pub fn add_object(
        &mut self,
        label: &str,
        (x, y, w, h): (i32, i32, i32, i32),
        confidence: f32,
    ) -> Result<u32, AnalyticsError> {
        let mut mtd = Mtd::empty();
        // SAFETY: a live relation meta of a buffer we borrow mutably; `mtd`
        // is written during the call only.
        let ok = unsafe {
            (self.lib.add_od)(
                self.meta.as_ptr(),
                quark(label),
                x,
                y,
                w,
                h,
                confidence,
                &mut mtd,
            )
        };
        check(ok, "object detection entry").map(|()| mtd.id)
    }

    /// Adds a classification entry of `classes` (label, confidence), most
    /// probable first; returns its id.
    pub fn add_classes(&mut self, classes: &[(&str, f32)]) -> Result<u32, AnalyticsError> {
        let mut levels: Vec<f32> = classes.iter().map(|c| c.1).collect();
        let mut quarks: Vec<GQuark> = classes.iter().map(|c| quark(c.0)).collect();
        let mut mtd = Mtd::empty();
        // SAFETY: a live relation meta; both arrays hold `classes.len()`
        // values and are copied by the call.
        let ok = unsafe {
            (self.lib.add_cls)(
                self.meta.as_ptr(),
                classes.len(),
                levels.as_mut_ptr(),
                quarks.as_mut_ptr(),
                &mut mtd,
            )
        };
        check(ok, "classification entry").map(|()| mtd.id)
    }

    /// Adds a tracking entry; returns its id.
    pub fn add_track(
        &mut self,
        id: u64,
        first_seen: Option<gst::ClockTime>,
        last_seen: Option<gst::ClockTime>,
        lost: bool,
    ) -> Result<u32, AnalyticsError> {
        let mut mtd = Mtd::empty();
        // SAFETY: a live relation meta; on success `mtd` refers to the new
        // entry of it, which the update calls then take.
        unsafe {
            let ok =
                (self.lib.add_tracking)(self.meta.as_ptr(), id, clock_time(first_seen), &mut mtd);
            check(ok, "tracking entry")?;
            check(
                (self.lib.tracking_update_last_seen)(&mut mtd, clock_time(last_seen)),
                "tracking entry's last-seen time",
            )?;
            if lost {
                check(
                    (self.lib.tracking_set_lost)(&mut mtd),
                    "tracking entry's lost state",
                )?;
            }
        }
        Ok(mtd.id)
    }

    /// Says that entry `from` relates to entry `to`
    /// (`GST_ANALYTICS_REL_TYPE_RELATE_TO`, from → to).
    pub fn relate(&mut self, from: u32, to: u32) -> Result<(), AnalyticsError> {
        // SAFETY: a live relation meta; unknown ids make it return FALSE.
        let ok =
            unsafe { (self.lib.set_relation)(self.meta.as_ptr(), REL_TYPE_RELATE_TO, from, to) };
        check(ok, "relation")
    }
}

/// The buffer's relation meta, for reading.
pub struct RelationMetaRef<'a> {
    lib: &'static Library,
    meta: NonNull<Meta>,
    _buffer: PhantomData<&'a gst::BufferRef>,
}

/// The buffer's relation meta, if it has one (and the library is there).
pub fn relation_meta(buffer: &gst::BufferRef) -> Option<RelationMetaRef<'_>> {
    let lib = library().ok()?;
    // SAFETY: a valid buffer; the getter only reads it (it takes a
    // non-const pointer for historical reasons).
    let ptr = unsafe { (lib.get_meta)(buffer.as_ptr() as *mut gst::ffi::GstBuffer) };
    NonNull::new(ptr).map(|meta| RelationMetaRef {
        lib,
        meta,
        _buffer: PhantomData,
    })
}

impl RelationMetaRef<'_> {
    /// Number of entries (their ids are 0..len).
    pub fn len(&self) -> usize {
        // SAFETY: a live relation meta of a buffer we borrow.
        unsafe { (self.lib.length)(self.meta.as_ptr()) }
    }

    /// Entry `id`, if there is one.
    pub fn entry(&self, id: u32) -> Option<Entry> {
        let lib = self.lib;
        let mut mtd = Mtd::empty();
        // SAFETY: a live relation meta; the getters take the handle the
        // meta filled in, for an entry of the type they read (checked).
        unsafe {
            if (lib.get_mtd)(self.meta.as_ptr(), id, MTD_TYPE_ANY, &mut mtd) == 0 {
                return None;
            }
            let kind = (lib.mtd_type)(&mtd);
            Some(if kind == (lib.od_type)() {
                let (mut x, mut y, mut w, mut h, mut confidence) = (0, 0, 0, 0, 0f32);
                (lib.od_location)(&mtd, &mut x, &mut y, &mut w, &mut h, &mut confidence);
                Entry::Object {
                    label: label((lib.od_obj_type)(&mtd)),
                    rect: (x, y, w, h),
                    confidence,
                }
            } else if kind == (lib.cls_type)() {
                Entry::Classes(
                    (0..(lib.cls_length)(&mtd))
                        .map(|i| (label((lib.cls_quark)(&mtd, i)), (lib.cls_level)(&mtd, i)))
                        .collect(),
                )
            } else if kind == (lib.tracking_type)() {
                let (mut track, mut first, mut last, mut lost) = (0u64, 0, 0, 0);
                (lib.tracking_info)(&mtd, &mut track, &mut first, &mut last, &mut lost);
                Entry::Track {
                    id: track,
                    first_seen: from_glib(first),
                    last_seen: from_glib(last),
                    lost: lost != 0,
                }
            } else {
                Entry::Other
            })
        }
    }

    /// Whether entry `from` is related to entry `to` by RELATE_TO.
    pub fn relates(&self, from: u32, to: u32) -> bool {
        // SAFETY: a live relation meta; out-of-range ids give NONE.
        let types = unsafe { (self.lib.get_relation)(self.meta.as_ptr(), from, to) };
        types & REL_TYPE_RELATE_TO != 0
    }
}

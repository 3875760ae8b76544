//! Placing streams on GPUs: which NVIDIA decoder element decodes on which
//! CUDA device, and how streams are spread over several devices.
//!
//! GStreamer's nvcodec plugin registers one decoder element per GPU and
//! codec: the first GPU's is `nvh264dec`, the others' `nvh264device{N}dec`.
//! N is a counter of registrations in the 1.22+ decoders (not always the
//! CUDA ordinal: a GPU without the codec is skipped), so the registry is
//! asked which element reports `cuda-device-id` = the device, and the name
//! pattern is the fallback.
//!
//! [`decoder_for_device`] is public API (applications building a branch per
//! GPU); the spreading serves the benches and tests (`internals`).

/// The CUDA device an element or a `GstCudaContext` says it is on, by its
/// `cuda-device-id` property (a guint on decoders and contexts, a gint
/// with -1 for "any" on some other CUDA elements); `None` where it does not
/// say or says "any".
pub fn cuda_device_property(object: &glib::Object) -> Option<u32> {
    use glib::prelude::*;
    object.find_property("cuda-device-id")?;
    let value = object.property_value("cuda-device-id");
    value
        .get::<u32>()
        .ok()
        .or_else(|| value.get::<i32>().ok().and_then(|d| u32::try_from(d).ok()))
}

/// The decoder element name nvcodec gives the decoder of `codec` (`h264`,
/// `h265`, `vp9`, `av1`) on its `index`-th registered GPU (0: the first).
pub fn conventional_decoder_name(codec: &str, index: u32) -> String {
    if index == 0 {
        format!("nv{codec}dec")
    } else {
        format!("nv{codec}device{index}dec")
    }
}

/// Whether `name` is one of nvcodec's stateful-API `codec` decoders (the
/// `nv{codec}dec` family, not the `…sl…` stateless ones or encoders).
fn is_decoder_of(name: &str, codec: &str) -> bool {
    let first = format!("nv{codec}dec");
    if name == first {
        return true;
    }
    name.strip_prefix(&format!("nv{codec}device"))
        .and_then(|rest| rest.strip_suffix("dec"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// From (element name, the CUDA device it reports) pairs, the decoder of
/// `codec` on `device`.
pub fn pick_decoder<'a>(
    available: impl IntoIterator<Item = (&'a str, u32)>,
    codec: &str,
    device: u32,
) -> Option<&'a str> {
    available
        .into_iter()
        .find(|&(name, d)| d == device && is_decoder_of(name, codec))
        .map(|(name, _)| name)
}

/// The name of the registered decoder element for `codec` on CUDA device
/// `device`, found by its `cuda-device-id` (GStreamer >= 1.22); where no
/// element says, the conventional name ([`conventional_decoder_name`]).
/// Creating a decoder touches no GPU (it opens the device at READY).
pub fn decoder_for_device(codec: &str, device: u32) -> String {
    use gst::prelude::*;
    let registered: Vec<(String, u32)> =
        gst::ElementFactory::factories_with_type(gst::ElementFactoryType::DECODER, gst::Rank::NONE)
            .into_iter()
            .filter(|f| is_decoder_of(&f.name(), codec))
            .filter_map(|f| {
                let element = f.create().build().ok()?;
                let id = cuda_device_property(element.upcast_ref())?;
                Some((f.name().to_string(), id))
            })
            .collect();
    pick_decoder(
        registered.iter().map(|(n, d)| (n.as_str(), *d)),
        codec,
        device,
    )
    .map(str::to_string)
    .unwrap_or_else(|| conventional_decoder_name(codec, device))
}

/// The device of each of `streams` streams, round-robin over `devices`
/// (stream i on `devices[i % len]`), so that every device gets an equal
/// share, one more for the first `streams % len`. Empty `devices`: device 0.
#[cfg(any(test, feature = "internals"))]
pub fn spread(streams: usize, devices: &[u32]) -> Vec<u32> {
    if devices.is_empty() {
        return vec![0; streams];
    }
    (0..streams).map(|i| devices[i % devices.len()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nvcodec() {
        assert_eq!(conventional_decoder_name("h264", 0), "nvh264dec");
        assert_eq!(conventional_decoder_name("h264", 1), "nvh264device1dec");
        assert_eq!(conventional_decoder_name("h265", 3), "nvh265device3dec");
        assert!(is_decoder_of("nvh264dec", "h264"));
        assert!(is_decoder_of("nvh264device12dec", "h264"));
        for other in [
            "nvh264sldec",
            "nvh264sldevice1dec",
            "nvh264enc",
            "nvh265dec",
            "nvh264devicedec",
            "nvh264device1xdec",
        ] {
            assert!(!is_decoder_of(other, "h264"), "{other}");
        }
    }

    #[test]
    fn the_decoder_is_the_one_on_the_device() {
        // A machine whose GPU 0 lacks the codec: the counter and the
        // ordinal differ, and the reported device decides.
        let available = [
            ("nvh264sldec", 1),
            ("nvh264dec", 1),
            ("nvh264device1dec", 2),
            ("nvh265dec", 0),
        ];
        assert_eq!(pick_decoder(available, "h264", 1), Some("nvh264dec"));
        assert_eq!(pick_decoder(available, "h264", 2), Some("nvh264device1dec"));
        assert_eq!(pick_decoder(available, "h264", 0), None);
        assert_eq!(pick_decoder(available, "h265", 0), Some("nvh265dec"));
    }

    #[test]
    fn streams_spread_round_robin() {
        assert_eq!(spread(5, &[0, 1]), [0, 1, 0, 1, 0]);
        assert_eq!(spread(3, &[1]), [1, 1, 1]);
        assert_eq!(spread(4, &[2, 0, 1]), [2, 0, 1, 2]);
        assert_eq!(spread(2, &[]), [0, 0]);
        let on_two = spread(32, &[0, 1]);
        assert_eq!(on_two.iter().filter(|&&d| d == 1).count(), 16);
    }
}

//! What every element's properties share: the two kinds of flags and the
//! reading of a path property.

use std::path::PathBuf;

use gst::glib;

/// A property read at start only: it may be set in NULL or READY.
pub(crate) const MUTABLE_READY: glib::ParamFlags =
    glib::ParamFlags::READWRITE.union(gst::PARAM_FLAG_MUTABLE_READY);

/// A property that takes effect on the next frame, in any state.
pub(crate) const MUTABLE_PLAYING: glib::ParamFlags =
    glib::ParamFlags::READWRITE.union(gst::PARAM_FLAG_MUTABLE_PLAYING);

/// A path property's value: unset or empty is none.
pub(crate) fn path_property(value: &glib::Value) -> Option<PathBuf> {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Whether `pspec` may take a new value now. Settings read at start only
/// ([`MUTABLE_READY`]) may not while the element is started: the new
/// value would read back as set and change nothing. A refusal is logged.
pub(crate) fn may_change_now(
    element: &gst::Element,
    cat: gst::DebugCategory,
    pspec: &glib::ParamSpec,
) -> bool {
    use gst::prelude::*;
    if pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_READY)
        && element.current_state() > gst::State::Ready
    {
        gst::warning!(
            cat,
            obj = element,
            "cannot change {} while PLAYING/PAUSED: set it in NULL or READY",
            pspec.name()
        );
        return false;
    }
    true
}

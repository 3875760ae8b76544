//! Where trtinfer's errors become GStreamer errors: each kind of
//! [`LoadError`] has its domain, by what the user has to fix.

use crate::inference::LoadError;

/// The element error for a model that could not be loaded.
pub(super) fn load_error_message(error: &LoadError) -> gst::ErrorMessage {
    match error {
        LoadError::ModelNotFound(_) => {
            gst::error_msg!(gst::ResourceError::NotFound, ("{}", error))
        }
        LoadError::ModelUnreadable(_) | LoadError::Labels(_) => {
            gst::error_msg!(gst::ResourceError::OpenRead, ("{}", error))
        }
        LoadError::ModelMismatch(_)
        | LoadError::ModelIo { .. }
        | LoadError::Family { .. }
        | LoadError::GraphPool { .. } => {
            gst::error_msg!(gst::LibraryError::Settings, ("{}", error))
        }
        LoadError::Runtime(_)
        | LoadError::PoolStream(_)
        | LoadError::WarmUp(_)
        | LoadError::Thread(_)
        | LoadError::Panicked => gst::error_msg!(gst::LibraryError::Init, ("{}", error)),
    }
}

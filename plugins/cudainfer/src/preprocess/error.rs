//! Why a frame could not be made into a model tensor.

use gst_video::VideoFormat;

use crate::cuda::CudaError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PreprocessError {
    /// Outside [`super::SUPPORTED_FORMATS`]: the caps should not allow it.
    #[error("unsupported format {0:?}")]
    UnsupportedFormat(VideoFormat),
    #[error("cannot read plane {plane}: {source}")]
    ReadPlane { plane: u32, source: glib::BoolError },
    #[error(
        "the frame is in CUDA context {frame_context:#x}, not in the primary context of CUDA device \
         {ordinal} ({primary:#x}) that cudapreprocess and ONNX Runtime work in. Let cudapreprocess \
         provide the pipeline's gst.cuda.context (do not set one yourself), and set its device-id \
         to the decoder's GPU"
    )]
    ForeignContext {
        frame_context: usize,
        ordinal: usize,
        primary: usize,
    },
    #[error(transparent)]
    Cuda(#[from] CudaError),
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn the_lower_error_is_the_source_and_its_text_is_shown_once() {
        let e = PreprocessError::ReadPlane {
            plane: 1,
            source: glib::bool_error!("plane 1 is not mapped"),
        };
        assert_eq!(e.to_string(), "cannot read plane 1: plane 1 is not mapped");
        let source = e.source().expect("glib's error is the source");
        assert!(source.downcast_ref::<glib::BoolError>().is_some());
        // A CUDA layer error passes through as it is, message and source.
        let cuda = PreprocessError::from(CudaError::Layout);
        assert_eq!(
            cuda.to_string(),
            "the frame's layout does not match its caps"
        );
        assert!(cuda.source().is_none());
    }
}

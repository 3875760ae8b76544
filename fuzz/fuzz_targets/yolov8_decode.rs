//! Ultralytics (YOLOv8/YOLO11/YOLOv12) output parsing, as trtinfer runs it
//! on a frame (see `fuzz_grid_family`): channel-major output
//! [N, 4 + classes, anchors].
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::{fuzz_grid_family, CappedAlloc, GridFamily};
use gstcudainfer::families::ModelType;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

const YOLOV8: GridFamily = GridFamily {
    model_type: ModelType::Yolov8,
    output_name: "output0",
    anchor_axis: 2,
    box_channels: 4,
};

fuzz_target!(|data: &[u8]| fuzz_grid_family(&YOLOV8, data));

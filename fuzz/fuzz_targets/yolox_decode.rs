//! YOLOX output parsing, as trtinfer runs it on a frame (see
//! `fuzz_grid_family`): output [N, anchors, 5 + classes].
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::{fuzz_grid_family, CappedAlloc, GridFamily};
use gstcudainfer::families::ModelType;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

const YOLOX: GridFamily = GridFamily {
    model_type: ModelType::Yolox,
    output_name: "output",
    anchor_axis: 1,
    box_channels: 5,
};

fuzz_target!(|data: &[u8]| fuzz_grid_family(&YOLOX, data));

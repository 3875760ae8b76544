//! CPU reference implementation of the pre-processing (system-memory video).
//! Written for clarity: the GPU kernel is tested against it.

use gst_video::prelude::*;

use super::{ComponentPlan, Plan, PreprocessError};
use crate::tensor::{Tensor, TensorStorage};

/// Resamples one component, separably: rows first, then columns.
fn resample(c: &ComponentPlan, data: &[u8], stride: usize) -> Vec<f32> {
    let ow = c.x_taps.len();
    let mut rows = vec![0f32; c.height * ow];
    for (y, out_row) in rows.chunks_exact_mut(ow).enumerate() {
        let row = &data[(c.first_row + y) * stride + c.offset..];
        for (out, t) in out_row.iter_mut().zip(&c.x_taps) {
            *out = t
                .range()
                .zip(&t.weights)
                .map(|(i, w)| row[i * c.step] as f32 * w)
                .sum();
        }
    }
    let mut out = vec![0f32; ow * c.y_taps.len()];
    for (out_row, t) in out.chunks_exact_mut(ow).zip(&c.y_taps) {
        for (i, w) in t.range().zip(&t.weights) {
            for (o, v) in out_row.iter_mut().zip(&rows[i * ow..(i + 1) * ow]) {
                *o += v * w;
            }
        }
    }
    out
}

/// Executes a [`Plan`] on frames in system memory.
pub struct CpuPreprocessor {
    plan: Plan,
}

impl CpuPreprocessor {
    pub fn new(plan: Plan) -> Self {
        Self { plan }
    }
    /// Builds the tensor for one mapped frame of the format given to `new`.
    pub fn run(
        &self,
        frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    ) -> Result<Tensor, PreprocessError> {
        run_plan(&self.plan, frame)
    }
}

/// Builds the tensor `plan` describes (the whole frame or a region of it)
/// from one mapped frame of the plan's format.
pub fn run_plan(
    plan: &Plan,
    frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
) -> Result<Tensor, PreprocessError> {
    let resampled: Vec<Vec<f32>> = plan
        .components
        .iter()
        .map(|c| {
            let data = frame
                .plane_data(c.plane)
                .map_err(|source| PreprocessError::ReadPlane {
                    plane: c.plane,
                    source,
                })?;
            Ok(resample(
                c,
                data,
                frame.plane_stride()[c.plane as usize] as usize,
            ))
        })
        .collect::<Result<_, PreprocessError>>()?;

    let (spec, norm) = (&plan.spec, &plan.norm);
    let (tw, th) = (spec.width as usize, spec.height as usize);
    let area = tw * th;
    let mut data = vec![0f32; 3 * area];
    for (channel, pad) in data.chunks_exact_mut(area).zip(plan.pad_values()) {
        channel.fill(pad);
    }
    let g = &plan.geometry;
    let (cw, cx, cy) = (
        g.content_width as usize,
        g.content_x as usize,
        g.content_y as usize,
    );
    let samples = resampled[0].iter().zip(&resampled[1]).zip(&resampled[2]);
    for (i, ((&a, &b), &c)) in samples.enumerate() {
        let rgb = match &plan.yuv {
            Some(conv) => conv.convert(a, b, c),
            None => [a, b, c],
        };
        let at = (cy + i / cw) * tw + cx + i % cw;
        for ch in 0..3 {
            data[ch * area + at] = rgb[norm.source_channel[ch]] * norm.gain[ch] + norm.bias[ch];
        }
    }

    Ok(Tensor {
        channels: 3,
        height: th,
        width: tw,
        storage: TensorStorage::Host(data),
        transform: plan.geometry.transform,
    })
}

//! Constant-velocity Kalman filter of a box (SORT/ByteTrack's motion
//! model) in centre-size form (cx, cy, w, h).
//!
//! With a constant-velocity transition, a position-only measurement and
//! noise that is diagonal per coordinate, the 8-state filter of the box
//! separates exactly into four independent 2-state (position, velocity)
//! filters: every matrix of the full filter is block diagonal in those
//! pairs. So each coordinate is its own [`AxisFilter`], in closed form.

/// Noise scale of positions relative to the box size (ByteTrack's
/// `std_weight_position`).
const STD_POSITION: f32 = 1.0 / 20.0;
/// Noise scale of velocities relative to the box size
/// (`std_weight_velocity`).
const STD_VELOCITY: f32 = 1.0 / 160.0;
/// Smallest size the noise is scaled by, so a degenerate box still has
/// some uncertainty.
const MIN_SCALE: f32 = 1.0;

/// One coordinate: position `p`, velocity `v` per frame, covariance `cov`
/// ([[pp, pv], [pv, vv]], symmetric).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisFilter {
    pub p: f32,
    pub v: f32,
    pub cov: [[f32; 2]; 2],
}

impl AxisFilter {
    /// Starts at position `p`, velocity 0, with variances `var_p`, `var_v`.
    pub fn new(p: f32, var_p: f32, var_v: f32) -> Self {
        Self {
            p,
            v: 0.0,
            cov: [[var_p, 0.0], [0.0, var_v]],
        }
    }

    /// One frame ahead: x = F x, P = F P Fᵀ + Q with F = [[1, 1], [0, 1]]
    /// and Q = diag(q_p, q_v).
    pub fn predict(&mut self, q_p: f32, q_v: f32) {
        let [[a, b], [_, d]] = self.cov;
        self.p += self.v;
        self.cov = [[a + 2.0 * b + d + q_p, b + d], [b + d, d + q_v]];
    }

    /// Takes a measurement `z` of the position with variance `r`: the
    /// standard update with H = [1, 0].
    pub fn update(&mut self, z: f32, r: f32) {
        let [[a, b], [_, d]] = self.cov;
        let s = a + r;
        let (k0, k1) = (a / s, b / s);
        let innovation = z - self.p;
        self.p += k0 * innovation;
        self.v += k1 * innovation;
        // (I - K H) P, written out; symmetric by construction.
        self.cov = [[a - k0 * a, b - k0 * b], [b - k0 * b, d - k1 * b]];
    }
}

/// A box as four axis filters: centre x, centre y, width, height. The x
/// and width axes scale their noise by the width, y and height by the
/// height (the xywh variant of ByteTrack's filter, which uses the height
/// for all four).
#[derive(Debug, Clone, PartialEq)]
pub struct BoxFilter {
    axes: [AxisFilter; 4],
}

/// Noise scale of each axis: the box's width for cx and w, its height
/// for cy and h.
fn scales(w: f32, h: f32) -> [f32; 4] {
    let (w, h) = (w.max(MIN_SCALE), h.max(MIN_SCALE));
    [w, h, w, h]
}

impl BoxFilter {
    /// Starts at `corners` (x1, y1, x2, y2), at rest, with ByteTrack's
    /// initial uncertainty (2 position and 10 velocity noise units).
    pub fn new(corners: [f32; 4]) -> Self {
        let z = to_cxcywh(corners);
        let s = scales(z[2], z[3]);
        let axes = std::array::from_fn(|i| {
            AxisFilter::new(
                z[i],
                (2.0 * STD_POSITION * s[i]).powi(2),
                (10.0 * STD_VELOCITY * s[i]).powi(2),
            )
        });
        Self { axes }
    }

    /// Advances one frame.
    pub fn predict(&mut self) {
        let s = scales(self.axes[2].p, self.axes[3].p);
        for (axis, s) in self.axes.iter_mut().zip(s) {
            axis.predict((STD_POSITION * s).powi(2), (STD_VELOCITY * s).powi(2));
        }
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, corners: [f32; 4]) {
        let z = to_cxcywh(corners);
        let s = scales(self.axes[2].p, self.axes[3].p);
        for ((axis, z), s) in self.axes.iter_mut().zip(z).zip(s) {
            axis.update(z, (STD_POSITION * s).powi(2));
        }
    }

    /// Stops the size from changing on its own: ByteTrack's treatment of
    /// a track that is not being measured, whose growth or shrinking
    /// would otherwise run away.
    pub fn freeze_size(&mut self) {
        self.axes[2].v = 0.0;
        self.axes[3].v = 0.0;
    }

    /// The current box as (x1, y1, x2, y2); the size is never negative.
    pub fn corners(&self) -> [f32; 4] {
        let [cx, cy, w, h] = self.axes.map(|a| a.p);
        let (w, h) = (w.max(0.0), h.max(0.0));
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }

    /// Velocity of the centre, pixels per frame.
    #[cfg(test)]
    pub fn velocity(&self) -> (f32, f32) {
        (self.axes[0].v, self.axes[1].v)
    }
}

fn to_cxcywh([x1, y1, x2, y2]: [f32; 4]) -> [f32; 4] {
    [(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn predict_moves_by_velocity_and_grows_covariance() {
        // P = [[4, 1], [1, 2]], Q = diag(0.5, 0.25), x = (10, 3):
        // x' = (13, 3); P' = [[4 + 2 + 2 + 0.5, 1 + 2], [3, 2 + 0.25]].
        let mut f = AxisFilter {
            p: 10.0,
            v: 3.0,
            cov: [[4.0, 1.0], [1.0, 2.0]],
        };
        f.predict(0.5, 0.25);
        assert_eq!(f.p, 13.0);
        assert_eq!(f.v, 3.0);
        assert_eq!(f.cov, [[8.5, 3.0], [3.0, 2.25]]);
    }

    #[test]
    fn update_by_hand() {
        // P = [[3, 1], [1, 2]], r = 1: S = 4, K = (0.75, 0.25).
        // z = 14 against p = 10: innovation 4, p = 13, v = 0 + 1 = 1.
        // P' = [[3 - 2.25, 1 - 0.75], [0.25, 2 - 0.25]].
        let mut f = AxisFilter {
            p: 10.0,
            v: 0.0,
            cov: [[3.0, 1.0], [1.0, 2.0]],
        };
        f.update(14.0, 1.0);
        assert!(close(f.p, 13.0));
        assert!(close(f.v, 1.0));
        let want = [[0.75, 0.25], [0.25, 1.75]];
        for (row, want) in f.cov.iter().zip(want) {
            for (v, w) in row.iter().zip(want) {
                assert!(close(*v, w), "{:?}", f.cov);
            }
        }
    }

    #[test]
    fn exact_measurement_is_taken_and_noisy_one_ignored() {
        let mut f = AxisFilter::new(0.0, 1.0, 1.0);
        f.update(5.0, 0.0);
        assert!(close(f.p, 5.0));
        let mut g = AxisFilter::new(0.0, 1.0, 1.0);
        g.update(5.0, 1e12);
        assert!(g.p.abs() < 1e-6);
    }

    #[test]
    fn box_learns_constant_velocity() {
        // A 40x80 box moving +4 px in x and -2 px in y per frame: after
        // ten frames the filter's velocity is close to the truth and its
        // prediction lands on the next box.
        let at = |t: f32| {
            [
                100.0 + 4.0 * t,
                200.0 - 2.0 * t,
                140.0 + 4.0 * t,
                280.0 - 2.0 * t,
            ]
        };
        let mut f = BoxFilter::new(at(0.0));
        for t in 1..=10 {
            f.predict();
            f.update(at(t as f32));
        }
        let (vx, vy) = f.velocity();
        assert!(
            (vx - 4.0).abs() < 0.3 && (vy + 2.0).abs() < 0.3,
            "{vx} {vy}"
        );
        f.predict();
        let want = at(11.0);
        for (got, want) in f.corners().iter().zip(want) {
            assert!((got - want).abs() < 1.0, "{:?} vs {want:?}", f.corners());
        }
    }

    #[test]
    fn frozen_size_keeps_box_size_while_centre_moves() {
        let mut f = BoxFilter::new([0.0, 0.0, 10.0, 10.0]);
        for t in 1..=5 {
            let g = t as f32;
            f.predict();
            f.update([5.0 * g, 0.0, 10.0 + 6.0 * g, 10.0 + g]);
        }
        f.freeze_size();
        let before = f.corners();
        f.predict();
        let after = f.corners();
        let size = |c: [f32; 4]| (c[2] - c[0], c[3] - c[1]);
        assert!(close(size(before).0, size(after).0) && close(size(before).1, size(after).1));
        assert!(after[0] > before[0]);
    }
}

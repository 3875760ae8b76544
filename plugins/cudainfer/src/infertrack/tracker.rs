//! Multi-object tracking by detection, ByteTrack's way: a Kalman motion
//! model per track, IoU assignment in passes (high-score detections,
//! then low-score ones for the tracks still unmatched, then the
//! tentative tracks), tentative tracks confirmed after `min_hits`
//! matches, unmatched confirmed tracks kept as lost for `max_lost` frames.
//!
//! One [`Tracker`] per stream; track ids come from one process-wide
//! counter, so no two streams (nor a stream before and after a reset)
//! share an id.

use std::sync::atomic::{AtomicU64, Ordering};

use super::assign::{assign, iou};
use super::kalman::BoxFilter;
use crate::meta::detections::{Track, TrackState};

/// The next track id of the process; ids start at 1.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The association settings (the element's properties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Detections at or above this score are matched first and start tracks.
    pub high_threshold: f32,
    /// Detections from this score up to `high_threshold` only continue
    /// tracks; below it they are ignored.
    pub low_threshold: f32,
    /// Least IoU of a track's predicted box and a detection to match them.
    pub match_iou: f32,
    /// Matches (the first detection included) that confirm a track.
    pub min_hits: u32,
    /// Frames a confirmed track is kept unmatched before it is dropped.
    pub max_lost: u32,
    /// Match only detections of the track's class.
    pub class_aware: bool,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            high_threshold: 0.5,
            low_threshold: 0.1,
            match_iou: 0.3,
            min_hits: 3,
            max_lost: 30,
            class_aware: true,
        }
    }
}

/// What the tracker needs of a detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub class_id: u32,
    pub label: String,
    pub confidence: f32,
    /// (x1, y1, x2, y2) in frame pixels.
    pub corners: [f32; 4],
}

/// A track's box without a detection of its own in this frame: a lost
/// track's, or any established track's on a frame that was not inferred.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackBox {
    pub track: Track,
    /// The class, label and confidence of its last detection.
    pub class_id: u32,
    pub label: String,
    pub confidence: f32,
    /// The predicted box.
    pub corners: [f32; 4],
}

/// The result of one frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameTracks {
    /// For each observation, in order: its track, or `None` for a
    /// low-score detection that continued no track (or one under the low
    /// threshold).
    pub tracks: Vec<Option<Track>>,
    /// Tracks not matched in this frame, still kept.
    pub lost: Vec<TrackBox>,
}

#[derive(Debug, Clone)]
struct TrackEntry {
    id: u64,
    class_id: u32,
    label: String,
    confidence: f32,
    filter: BoxFilter,
    hits: u32,
    age: u32,
    /// Frames since the last match.
    missed: u32,
    state: TrackState,
}

impl TrackEntry {
    fn public(&self) -> Track {
        Track {
            id: self.id,
            age: self.age,
            state: self.state,
        }
    }

    fn take(&mut self, obs: &Observation, params: &Params) {
        self.filter.update(obs.corners);
        self.hits += 1;
        self.missed = 0;
        self.confidence = obs.confidence;
        self.label.clone_from(&obs.label);
        if self.state != TrackState::Tentative || self.hits >= params.min_hits {
            self.state = TrackState::Confirmed;
        }
    }
}

/// The tracks of one stream.
#[derive(Debug, Default)]
pub struct Tracker {
    tracks: Vec<TrackEntry>,
}

impl Tracker {
    /// Forgets every track (a flush or a new stream); ids are not reused.
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Tracks alive now, of any state.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Advances by `steps` frames on a frame that was not inferred (no
    /// observations to match, so no track counts a miss): the boxes of the
    /// established tracks (confirmed and lost), as the motion model
    /// predicts them.
    pub fn predict(&mut self, steps: u32) -> Vec<TrackBox> {
        let steps = steps.max(1);
        let mut boxes = Vec::new();
        for t in &mut self.tracks {
            if t.state == TrackState::Lost {
                t.filter.freeze_size();
            }
            for _ in 0..steps {
                t.filter.predict();
            }
            t.age = t.age.saturating_add(steps);
            if t.state != TrackState::Tentative {
                boxes.push(TrackBox {
                    track: t.public(),
                    class_id: t.class_id,
                    label: t.label.clone(),
                    confidence: t.confidence,
                    corners: t.filter.corners(),
                });
            }
        }
        boxes
    }

    /// Advances by `steps` frames (1 for consecutive frames, more after a
    /// gap) and matches this frame's `observations`.
    pub fn update(
        &mut self,
        observations: &[Observation],
        steps: u32,
        params: &Params,
    ) -> FrameTracks {
        let steps = steps.max(1);
        for t in &mut self.tracks {
            if t.state == TrackState::Lost {
                t.filter.freeze_size();
            }
            for _ in 0..steps {
                t.filter.predict();
            }
            t.age = t.age.saturating_add(steps);
        }

        let mut result = vec![None; observations.len()];
        let mut matched = vec![false; self.tracks.len()];
        let (high, low): (Vec<usize>, Vec<usize>) = (0..observations.len())
            // A box with NaN or infinity would poison its track's filter.
            .filter(|&i| {
                let o = &observations[i];
                o.confidence >= params.low_threshold && o.corners.iter().all(|v| v.is_finite())
            })
            .partition(|&i| observations[i].confidence >= params.high_threshold);
        let mut high_used = vec![false; high.len()];

        // Pass 1: established tracks (confirmed or lost) × high scores.
        let established: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].state != TrackState::Tentative)
            .collect();
        self.match_pass(
            &established,
            &high,
            &mut high_used,
            observations,
            params,
            &mut matched,
            &mut result,
        );

        // Pass 2: tracks that were followed until the last frame and are
        // still unmatched × low scores (an object fading or partly hidden).
        let followed: Vec<usize> = established
            .iter()
            .copied()
            .filter(|&t| !matched[t] && self.tracks[t].state == TrackState::Confirmed)
            .collect();
        let mut low_used = vec![false; low.len()];
        self.match_pass(
            &followed,
            &low,
            &mut low_used,
            observations,
            params,
            &mut matched,
            &mut result,
        );

        // Pass 3: tentative tracks × the high scores left.
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].state == TrackState::Tentative)
            .collect();
        self.match_pass(
            &tentative,
            &high,
            &mut high_used,
            observations,
            params,
            &mut matched,
            &mut result,
        );

        // Unmatched: tentative tracks end, confirmed ones are lost, lost
        // ones end after max_lost frames.
        let mut keep = Vec::with_capacity(self.tracks.len());
        for (t, was_matched) in std::mem::take(&mut self.tracks).into_iter().zip(matched) {
            let mut t = t;
            if !was_matched {
                if t.state == TrackState::Tentative {
                    continue;
                }
                t.state = TrackState::Lost;
                t.missed = t.missed.saturating_add(steps);
                if t.missed > params.max_lost {
                    continue;
                }
            }
            keep.push(t);
        }
        self.tracks = keep;
        let lost = self
            .tracks
            .iter()
            .filter(|t| t.state == TrackState::Lost)
            .map(|t| TrackBox {
                track: t.public(),
                class_id: t.class_id,
                label: t.label.clone(),
                confidence: t.confidence,
                corners: t.filter.corners(),
            })
            .collect();

        // High scores nobody took start tracks.
        for (&i, used) in high.iter().zip(&high_used) {
            if *used {
                continue;
            }
            let obs = &observations[i];
            let entry = TrackEntry {
                id: new_id(),
                class_id: obs.class_id,
                label: obs.label.clone(),
                confidence: obs.confidence,
                filter: BoxFilter::new(obs.corners),
                hits: 1,
                age: 0,
                missed: 0,
                state: if params.min_hits <= 1 {
                    TrackState::Confirmed
                } else {
                    TrackState::Tentative
                },
            };
            result[i] = Some(entry.public());
            self.tracks.push(entry);
        }
        FrameTracks {
            tracks: result,
            lost,
        }
    }

    /// Matches `candidates` (track indices) with the unused observations
    /// of `pool`, updating the matched tracks and `result`.
    #[allow(clippy::too_many_arguments)]
    fn match_pass(
        &mut self,
        candidates: &[usize],
        pool: &[usize],
        used: &mut [bool],
        observations: &[Observation],
        params: &Params,
        matched: &mut [bool],
        result: &mut [Option<Track>],
    ) {
        let free: Vec<usize> = (0..pool.len()).filter(|&k| !used[k]).collect();
        let predicted: Vec<[f32; 4]> = candidates
            .iter()
            .map(|&t| self.tracks[t].filter.corners())
            .collect();
        let pairs = assign(candidates.len(), free.len(), params.match_iou, |r, c| {
            let obs = &observations[pool[free[c]]];
            let track = &self.tracks[candidates[r]];
            (!params.class_aware || obs.class_id == track.class_id)
                .then(|| iou(predicted[r], obs.corners))
        });
        for (r, c) in pairs {
            let (t, k) = (candidates[r], free[c]);
            let obs = &observations[pool[k]];
            let track = &mut self.tracks[t];
            track.take(obs, params);
            if !params.class_aware {
                track.class_id = obs.class_id;
            }
            used[k] = true;
            matched[t] = true;
            result[pool[k]] = Some(track.public());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(class_id: u32, confidence: f32, x: f32, y: f32) -> Observation {
        Observation {
            class_id,
            label: format!("class-{class_id}"),
            confidence,
            corners: [x, y, x + 40.0, y + 80.0],
        }
    }

    fn ids(f: &FrameTracks) -> Vec<Option<u64>> {
        f.tracks.iter().map(|t| t.map(|t| t.id)).collect()
    }

    #[test]
    fn confirms_after_min_hits_and_keeps_id() {
        let params = Params::default();
        let mut tr = Tracker::default();
        let mut first = None;
        for frame in 0..5u32 {
            let out = tr.update(&[obs(0, 0.9, 10.0 + 3.0 * frame as f32, 20.0)], 1, &params);
            let t = out.tracks[0].unwrap();
            first.get_or_insert(t.id);
            assert_eq!(Some(t.id), first);
            assert_eq!(t.age, frame);
            let want = if frame + 1 >= params.min_hits {
                TrackState::Confirmed
            } else {
                TrackState::Tentative
            };
            assert_eq!(t.state, want, "frame {frame}");
        }
    }

    #[test]
    fn low_scores_continue_but_never_start_tracks() {
        let params = Params::default();
        let mut tr = Tracker::default();
        // A 0.3 detection alone starts nothing.
        let out = tr.update(&[obs(0, 0.3, 0.0, 0.0)], 1, &params);
        assert_eq!(ids(&out), vec![None]);
        assert_eq!(tr.len(), 0);
        for _ in 0..3 {
            tr.update(&[obs(0, 0.9, 100.0, 100.0)], 1, &params);
        }
        let id = tr.update(&[obs(0, 0.9, 100.0, 100.0)], 1, &params).tracks[0]
            .unwrap()
            .id;
        // Its score drops to 0.3: pass 2 keeps the track going.
        let out = tr.update(&[obs(0, 0.3, 101.0, 100.0)], 1, &params);
        assert_eq!(
            out.tracks[0].map(|t| (t.id, t.state)),
            Some((id, TrackState::Confirmed))
        );
        // Under the low threshold it is ignored and the track is lost.
        let out = tr.update(&[obs(0, 0.05, 102.0, 100.0)], 1, &params);
        assert_eq!(ids(&out), vec![None]);
        assert_eq!(out.lost.len(), 1);
        assert_eq!(out.lost[0].track.id, id);
    }

    #[test]
    fn lost_track_comes_back_then_expires() {
        let params = Params {
            max_lost: 5,
            ..Params::default()
        };
        let mut tr = Tracker::default();
        let mut id = 0;
        // 15 frames: long enough for the velocity to settle near 10 px.
        for f in 0..15 {
            id = tr
                .update(&[obs(0, 0.9, 10.0 * f as f32, 50.0)], 1, &params)
                .tracks[0]
                .unwrap()
                .id;
        }
        // Hidden 4 frames: lost, predicted along its motion.
        for f in 15..19 {
            let out = tr.update(&[], 1, &params);
            assert_eq!(out.lost.len(), 1);
            assert_eq!(out.lost[0].track.state, TrackState::Lost);
            assert!(
                (out.lost[0].corners[0] - 10.0 * f as f32).abs() < 3.0,
                "{:?}",
                out.lost[0].corners
            );
        }
        // Back where the motion model expects it: same id.
        let out = tr.update(&[obs(0, 0.9, 190.0, 50.0)], 1, &params);
        assert_eq!(
            out.tracks[0].map(|t| (t.id, t.state)),
            Some((id, TrackState::Confirmed))
        );
        // Hidden 6 frames > max_lost: gone; seen again, a new id.
        for _ in 0..6 {
            tr.update(&[], 1, &params);
        }
        assert_eq!(tr.len(), 0);
        let out = tr.update(&[obs(0, 0.9, 260.0, 50.0)], 1, &params);
        assert!(out.tracks[0].unwrap().id > id);
    }

    #[test]
    fn class_aware_matching() {
        let mut tr = Tracker::default();
        let aware = Params::default();
        let a = tr.update(&[obs(0, 0.9, 0.0, 0.0)], 1, &aware).tracks[0]
            .unwrap()
            .id;
        tr.update(&[obs(0, 0.9, 0.0, 0.0)], 1, &aware);
        tr.update(&[obs(0, 0.9, 0.0, 0.0)], 1, &aware);
        // Same box, other class: a new track.
        let b = tr.update(&[obs(1, 0.9, 0.0, 0.0)], 1, &aware).tracks[0]
            .unwrap()
            .id;
        assert_ne!(a, b);
        // Not class-aware: the box keeps its id whatever the class says.
        let blind = Params {
            class_aware: false,
            ..aware
        };
        let mut tr = Tracker::default();
        let a = tr.update(&[obs(0, 0.9, 0.0, 0.0)], 1, &blind).tracks[0]
            .unwrap()
            .id;
        let b = tr.update(&[obs(1, 0.9, 0.0, 0.0)], 1, &blind).tracks[0]
            .unwrap()
            .id;
        assert_eq!(a, b);
    }

    #[test]
    fn gap_predicts_several_frames() {
        let params = Params::default();
        let mut tr = Tracker::default();
        let mut id = 0;
        // 20 px per frame: a box 40 wide no longer overlaps itself one
        // frame on, but does after a correctly predicted gap of 5 frames.
        for f in 0..8 {
            id = tr
                .update(&[obs(0, 0.9, 20.0 * f as f32, 0.0)], 1, &params)
                .tracks[0]
                .unwrap()
                .id;
        }
        let out = tr.update(&[obs(0, 0.9, 20.0 * 12.0, 0.0)], 5, &params);
        let t = out.tracks[0].unwrap();
        assert_eq!((t.id, t.age), (id, 12));
    }

    #[test]
    fn unmatched_tentative_track_ends() {
        let params = Params::default();
        let mut tr = Tracker::default();
        tr.update(&[obs(0, 0.9, 0.0, 0.0)], 1, &params);
        let out = tr.update(&[], 1, &params);
        assert!(out.lost.is_empty());
        assert_eq!(tr.len(), 0);
    }
}

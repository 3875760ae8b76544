//! The `ssd-priors` mini-language: the prior boxes that raw SSD box
//! regressions are decoded against (see [`Priors`]).

/// The prior boxes of raw regressions, as `ssd-priors` describes them:
/// `strides=8,16,32,64;min-sizes=10,16,24/32,48/64,96/128,192,256;variances=0.1,0.2`
/// (UltraFace's, the value of every key left out). Layer `l` has stride
/// `s` and a feature map of fw × fh = ceil(W/s) × ceil(H/s) cells; each
/// cell (i, j) has one prior per min size m of the layer (`/` separates
/// the layers' lists), centred at ((i + 0.5)/fw, (j + 0.5)/fh), m/W wide
/// and m/H high, all clamped to 0..1; in the order (layer, row, column,
/// size). This is the priors UltraFace's model with decoding built in
/// uses (the raw model decoded against them gives its boxes to 1e-7).
#[derive(Debug, Clone, PartialEq)]
pub struct Priors {
    pub strides: Vec<u32>,
    pub min_sizes: Vec<Vec<f32>>,
    pub center_variance: f32,
    pub size_variance: f32,
}

/// Why an `ssd-priors` text is not a prior description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorsError {
    /// A `key=value` part whose key is none of strides, min-sizes, variances.
    UnknownKey(String),
    /// A part without `=`.
    NotKeyValue(String),
    /// A value that is not a list of positive numbers of the key's kind.
    BadValue { key: &'static str, value: String },
    /// Different numbers of strides and min-size lists.
    LayerCount { strides: usize, min_sizes: usize },
}

impl std::error::Error for PriorsError {}

impl std::fmt::Display for PriorsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = "the form is strides=8,16,32,64;min-sizes=10,16,24/32,48/64,96/128,192,256;variances=0.1,0.2";
        match self {
            PriorsError::UnknownKey(k) => write!(f, "unknown key '{k}' ({form})"),
            PriorsError::NotKeyValue(p) => write!(f, "'{p}' is not key=value ({form})"),
            PriorsError::BadValue { key, value } => write!(
                f,
                "{key}={value} is not {} ({form})",
                match *key {
                    "strides" => "a list of whole numbers above 0",
                    "variances" => "two numbers above 0",
                    _ => "lists of numbers above 0, one per stride, separated by '/'",
                }
            ),
            PriorsError::LayerCount { strides, min_sizes } => write!(
                f,
                "{strides} strides but {min_sizes} min-size lists: give one list per stride, separated by '/'"
            ),
        }
    }
}

impl Priors {
    /// UltraFace's layout.
    pub fn ultraface() -> Self {
        Priors {
            strides: vec![8, 16, 32, 64],
            min_sizes: vec![
                vec![10.0, 16.0, 24.0],
                vec![32.0, 48.0],
                vec![64.0, 96.0],
                vec![128.0, 192.0, 256.0],
            ],
            center_variance: 0.1,
            size_variance: 0.2,
        }
    }

    /// Reads an `ssd-priors` text (see [`Priors`]); keys left out keep
    /// UltraFace's values, so "" is UltraFace's layout.
    pub fn parse(text: &str) -> Result<Self, PriorsError> {
        let mut priors = Priors::ultraface();
        let numbers = |key: &'static str, value: &str| -> Result<Vec<f32>, PriorsError> {
            let bad = || PriorsError::BadValue {
                key,
                value: value.to_string(),
            };
            let list: Vec<f32> = value
                .split(',')
                .map(|v| v.trim().parse::<f32>().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            if list.iter().all(|v| v.is_finite() && *v > 0.0) {
                Ok(list)
            } else {
                Err(bad())
            }
        };
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| PriorsError::NotKeyValue(part.to_string()))?;
            let value = value.trim();
            match key.trim() {
                "strides" => {
                    priors.strides = value
                        .split(',')
                        .map(|v| v.trim().parse::<u32>().ok().filter(|&s| s > 0))
                        .collect::<Option<_>>()
                        .ok_or_else(|| PriorsError::BadValue {
                            key: "strides",
                            value: value.to_string(),
                        })?
                }
                "min-sizes" => {
                    priors.min_sizes = value
                        .split('/')
                        .map(|layer| numbers("min-sizes", layer))
                        .collect::<Result<_, _>>()
                        .map_err(|_| PriorsError::BadValue {
                            key: "min-sizes",
                            value: value.to_string(),
                        })?
                }
                "variances" => match numbers("variances", value)?[..] {
                    [centre, size] => {
                        priors.center_variance = centre;
                        priors.size_variance = size;
                    }
                    _ => {
                        return Err(PriorsError::BadValue {
                            key: "variances",
                            value: value.to_string(),
                        })
                    }
                },
                other => return Err(PriorsError::UnknownKey(other.to_string())),
            }
        }
        if priors.strides.len() != priors.min_sizes.len() {
            return Err(PriorsError::LayerCount {
                strides: priors.strides.len(),
                min_sizes: priors.min_sizes.len(),
            });
        }
        Ok(priors)
    }

    /// The number of priors of a `width` x `height` input (sides of at
    /// most `MAX_TENSOR_SIDE`, so it cannot overflow a u64).
    pub(crate) fn count(&self, width: u32, height: u32) -> u64 {
        self.strides
            .iter()
            .zip(&self.min_sizes)
            .map(|(&s, sizes)| {
                u64::from(width.div_ceil(s)) * u64::from(height.div_ceil(s)) * sizes.len() as u64
            })
            .sum()
    }

    /// Every prior of a `width` x `height` input, [cx, cy, w, h] in 0..1.
    pub(super) fn boxes(&self, width: u32, height: u32) -> Vec<[f32; 4]> {
        let mut out = Vec::new();
        for (&stride, sizes) in self.strides.iter().zip(&self.min_sizes) {
            let (fw, fh) = (width.div_ceil(stride), height.div_ceil(stride));
            for j in 0..fh {
                for i in 0..fw {
                    for &m in sizes {
                        let prior = [
                            (i as f32 + 0.5) / fw as f32,
                            (j as f32 + 0.5) / fh as f32,
                            m / width as f32,
                            m / height as f32,
                        ];
                        out.push(prior.map(|v| v.clamp(0.0, 1.0)));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ultraface_layout_has_4420_priors_like_the_model() {
        let p = Priors::parse("").unwrap();
        assert_eq!(p, Priors::ultraface());
        assert_eq!(p.count(320, 240), 4420);
        let boxes = p.boxes(320, 240);
        assert_eq!(boxes.len(), 4420);
        // Stride 8, cell (0, 0): three sizes.
        assert_eq!(
            boxes[0],
            [0.5 / 40.0, 0.5 / 30.0, 10.0 / 320.0, 10.0 / 240.0]
        );
        assert_eq!(boxes[2][2], 24.0 / 320.0);
        // Last: stride 64, cell (4, 3) of a 5x4 map, 256: 256/240 clamped.
        assert_eq!(boxes[4419], [4.5 / 5.0, 3.5 / 4.0, 0.8, 1.0]);
    }

    #[test]
    fn reads_and_refuses_prior_descriptions() {
        let p = Priors::parse(" strides=8,16 ; min-sizes=10/20,30 ;variances=0.1,0.25").unwrap();
        assert_eq!(p.strides, [8, 16]);
        assert_eq!(p.min_sizes, [vec![10.0], vec![20.0, 30.0]]);
        assert_eq!((p.center_variance, p.size_variance), (0.1, 0.25));
        // 40x30 cells x 1 + 20x15 x 2.
        assert_eq!(p.count(320, 240), 1200 + 600);
        let only = Priors::parse("variances=0.2,0.2").unwrap();
        assert_eq!(only.strides, Priors::ultraface().strides);
        let e = |t: &str| Priors::parse(t).unwrap_err();
        assert_eq!(e("stride=8"), PriorsError::UnknownKey("stride".into()));
        assert_eq!(e("strides"), PriorsError::NotKeyValue("strides".into()));
        assert!(matches!(
            e("strides=8,0"),
            PriorsError::BadValue { key: "strides", .. }
        ));
        assert!(matches!(
            e("min-sizes=1/x"),
            PriorsError::BadValue {
                key: "min-sizes",
                ..
            }
        ));
        assert!(matches!(
            e("variances=0.1"),
            PriorsError::BadValue {
                key: "variances",
                ..
            }
        ));
        assert_eq!(
            e("strides=8,16"),
            PriorsError::LayerCount {
                strides: 2,
                min_sizes: 4
            }
        );
        assert!(e("strides=8,0")
            .to_string()
            .contains("whole numbers above 0"));
    }
}

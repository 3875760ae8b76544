//! Which of a frame's objects `cudapreprocess mode=objects` crops: those of
//! the chosen classes, at least the minimum size, the most confident first,
//! at most a given number per frame.

use crate::meta::detections::Detection;

/// One entry of `object-classes`: a class id or a label.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    Id(u32),
    Label(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectFilter {
    /// Empty: every class.
    classes: Vec<Class>,
    pub min_size: u32,
    pub max_objects: usize,
}

impl ObjectFilter {
    /// `classes`: comma-separated class ids or labels ("person, 2"); blank
    /// entries are ignored; empty: every class.
    pub fn new(classes: &str, min_size: u32, max_objects: usize) -> Self {
        let classes = classes
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse()
                    .map_or_else(|_| Class::Label(c.to_owned()), Class::Id)
            })
            .collect();
        Self {
            classes,
            min_size,
            max_objects,
        }
    }

    fn wants(&self, d: &Detection) -> bool {
        let class = self.classes.is_empty()
            || self.classes.iter().any(|c| match c {
                Class::Id(id) => *id == d.class_id,
                Class::Label(label) => *label == d.label,
            });
        let size = self.min_size as f32;
        class && d.width >= size && d.height >= size
    }

    /// Indices of the objects to crop, most confident first.
    pub fn select(&self, detections: &[Detection]) -> Vec<usize> {
        let mut chosen: Vec<usize> = (0..detections.len())
            .filter(|&i| self.wants(&detections[i]))
            .collect();
        chosen.sort_by(|&a, &b| {
            detections[b]
                .confidence
                .total_cmp(&detections[a].confidence)
        });
        chosen.truncate(self.max_objects);
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(class_id: u32, label: &str, confidence: f32, side: f32) -> Detection {
        Detection {
            class_id,
            label: label.into(),
            confidence,
            width: side,
            height: side,
            ..Default::default()
        }
    }

    #[test]
    fn selects_by_class_size_and_count() {
        let objects = [
            object(0, "person", 0.5, 100.0),
            object(2, "car", 0.9, 100.0),
            object(0, "person", 0.8, 10.0),
            object(16, "dog", 0.7, 50.0),
            object(0, "person", 0.6, 40.0),
        ];
        assert_eq!(
            ObjectFilter::new("", 0, 10).select(&objects),
            [1, 2, 3, 4, 0]
        );
        assert_eq!(ObjectFilter::new("person", 16, 10).select(&objects), [4, 0]);
        assert_eq!(
            ObjectFilter::new(" 2 , dog,", 16, 10).select(&objects),
            [1, 3]
        );
        assert_eq!(ObjectFilter::new("", 16, 2).select(&objects), [1, 3]);
        assert!(ObjectFilter::new("cat", 0, 10).select(&objects).is_empty());
    }
}

//! The labels file's contents, as trtinfer reads them: no panic, and the
//! names keep to the lines they come from.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gst_cudainfer_fuzz::CappedAlloc;

use gstcudainfer::inference::MAX_LABELS_BYTES;
use gstcudainfer::internals::{parse_labels, LabelsError};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

fuzz_target!(|data: &[u8]| {
    match parse_labels(data) {
        Ok(names) => {
            assert!(data.len() as u64 <= MAX_LABELS_BYTES);
            let text = std::str::from_utf8(data).expect("accepted text is UTF-8");
            // Never more names than lines, nor more than the newlines allow.
            assert!(names.len() <= text.lines().count());
            assert!(names.len() <= text.matches('\n').count() + 1);
            // Line i names class i, trimmed; blank lines at the end name nothing.
            for (name, line) in names.iter().zip(text.lines()) {
                assert_eq!(name, line.trim());
            }
            assert!(names.last().is_none_or(|n| !n.is_empty()));
            // Writing the names back one per line reads the same names.
            let written: String = names.iter().map(|n| format!("{n}\n")).collect();
            assert_eq!(parse_labels(written.as_bytes()).as_ref(), Ok(&names));
        }
        Err(LabelsError::TooLarge) => assert!(data.len() as u64 > MAX_LABELS_BYTES),
        Err(LabelsError::NotUtf8(why)) => {
            // The very error UTF-8 decoding gives, where it gives it.
            assert_eq!(std::str::from_utf8(data).err(), Some(why));
        }
    }
});

//! Shared by the fuzz targets: a reader of their simple input format (so that
//! `make_seeds.py` can write seeds by hand) and an allocator that makes an
//! unbounded allocation a crash.

use std::alloc::{GlobalAlloc, Layout, System};

/// Largest single allocation a target may make: the parsers' biggest
/// legitimate one (YOLOX anchors at 8192x8192) is 16 MiB.
pub const MAX_ALLOCATION: usize = 256 << 20;

/// The system allocator, aborting on any allocation above
/// [`MAX_ALLOCATION`] (libFuzzer's `-malloc_limit_mb` needs a sanitizer;
/// the targets are built without one).
pub struct CappedAlloc;

unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No panic: formatting a message would allocate.
        const MSG: &[u8] = b"fuzz: allocation above MAX_ALLOCATION\n";
        unsafe { libc_write(MSG) };
        std::process::abort();
    }
}

unsafe fn libc_write(msg: &[u8]) {
    extern "C" {
        fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    }
    write(2, msg.as_ptr(), msg.len());
}

/// Reads a target's input front to back; past the end, every value is 0.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    pub fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }

    /// A shape: a rank byte (0..=7), then that many little-endian i64.
    pub fn shape(&mut self) -> Vec<i64> {
        let rank = self.u8() % 8;
        (0..rank).map(|_| self.i64()).collect()
    }

    /// A string: a length byte, then that many bytes (lossy UTF-8).
    pub fn string(&mut self) -> String {
        let len = (self.u8() as usize).min(self.data.len());
        let (s, rest) = self.data.split_at(len);
        self.data = rest;
        String::from_utf8_lossy(s).into_owned()
    }

    /// What is left, as little-endian f32 (a partial last value is dropped).
    pub fn rest_f32(&mut self) -> Vec<f32> {
        let values = self
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        self.data = &[];
        values
    }
}

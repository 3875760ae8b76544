//! NVML, the driver's management library, loaded at run time: PCIe
//! traffic, GPU memory and SM and decoder utilisation of a device for the
//! benchmarks.
//!
//! Included with `#[path = "common/nvml.rs"] mod nvml;`.
#![allow(dead_code)]

/// NVML, loaded at run time (the driver ships it).
pub struct Nvml {
    _lib: libloading::Library,
    device: *mut std::ffi::c_void,
    pcie_throughput: unsafe extern "C" fn(*mut std::ffi::c_void, u32, *mut u32) -> i32,
    memory_info: unsafe extern "C" fn(*mut std::ffi::c_void, *mut [u64; 3]) -> i32,
    utilization: unsafe extern "C" fn(*mut std::ffi::c_void, *mut [u32; 2]) -> i32,
    decoder_utilization: unsafe extern "C" fn(*mut std::ffi::c_void, *mut u32, *mut u32) -> i32,
}

// SAFETY: NVML is thread-safe; the device handle is a plain token.
unsafe impl Send for Nvml {}
unsafe impl Sync for Nvml {}

impl Nvml {
    /// Device 0.
    pub fn open() -> Option<Self> {
        Self::open_device(0)
    }

    /// Device `index` (NVML's order, which is CUDA's unless
    /// CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER reorder it).
    pub fn open_device(index: u32) -> Option<Self> {
        // SAFETY: NVML's documented C API.
        unsafe {
            let lib = libloading::Library::new("libnvidia-ml.so.1").ok()?;
            let init: libloading::Symbol<unsafe extern "C" fn() -> i32> =
                lib.get(b"nvmlInit_v2\0").ok()?;
            let by_index: libloading::Symbol<
                unsafe extern "C" fn(u32, *mut *mut std::ffi::c_void) -> i32,
            > = lib.get(b"nvmlDeviceGetHandleByIndex_v2\0").ok()?;
            if init() != 0 {
                return None;
            }
            let mut device = std::ptr::null_mut();
            if by_index(index, &mut device) != 0 {
                return None;
            }
            let pcie_throughput = *lib.get(b"nvmlDeviceGetPcieThroughput\0").ok()?;
            let memory_info = *lib.get(b"nvmlDeviceGetMemoryInfo\0").ok()?;
            let utilization = *lib.get(b"nvmlDeviceGetUtilizationRates\0").ok()?;
            let decoder_utilization = *lib.get(b"nvmlDeviceGetDecoderUtilization\0").ok()?;
            Some(Self {
                _lib: lib,
                device,
                pcie_throughput,
                memory_info,
                utilization,
                decoder_utilization,
            })
        }
    }

    /// (to the GPU, from the GPU) in KB/s over NVML's last 20 ms window.
    pub fn pcie_kb_per_s(&self) -> (u32, u32) {
        let (mut tx, mut rx) = (0, 0);
        // SAFETY: valid handle; counter 0 is TX (GPU to host), 1 is RX.
        unsafe {
            (self.pcie_throughput)(self.device, 0, &mut tx);
            (self.pcie_throughput)(self.device, 1, &mut rx);
        }
        (rx, tx)
    }

    pub fn used_memory_bytes(&self) -> u64 {
        let mut m = [0u64; 3];
        // SAFETY: nvmlMemory_t is { total, free, used }.
        unsafe { (self.memory_info)(self.device, &mut m) };
        m[2]
    }

    /// Percent of the last sample period in which a kernel ran (NVML's "GPU
    /// utilisation", the SM-busy figure nvidia-smi shows).
    pub fn sm_percent(&self) -> u32 {
        let mut u = [0u32; 2];
        // SAFETY: nvmlUtilization_t is { gpu, memory }.
        unsafe { (self.utilization)(self.device, &mut u) };
        u[0]
    }

    /// Percent of the last sample period the video decoders (NVDEC) were busy.
    pub fn decoder_percent(&self) -> u32 {
        let (mut percent, mut period_us) = (0, 0);
        // SAFETY: valid handle and out-pointers.
        unsafe { (self.decoder_utilization)(self.device, &mut percent, &mut period_us) };
        percent
    }
}

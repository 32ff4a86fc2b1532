//! The KVM system handle (`/dev/kvm`): opening it with errors that say what
//! to do, and the capabilities kvmini relies on.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Cap;

/// The KVM device [`Kvm::open`] opens; [`Kvm::open_path`] opens another.
pub const DEFAULT_DEVICE: &str = "/dev/kvm";

/// Errors of opening and checking KVM.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The device does not exist.
    #[error("{} does not exist: this machine has no KVM (enable hardware virtualization, or load the kvm module)", .0.display())]
    Missing(PathBuf),
    /// The device exists but this user may not open it.
    #[error("permission denied opening {}: add your user to the kvm group (sudo usermod -aG kvm $USER, then log in again) or run as root", .0.display())]
    PermissionDenied(PathBuf),
    /// Opening the device failed otherwise.
    #[error("cannot open {}", .path.display())]
    Open {
        /// The device path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The device is not a KVM device of the API version kvmini speaks.
    #[error("{} is not a usable KVM device (API version {version}, expected 12)", .path.display())]
    ApiVersion {
        /// The device path.
        path: PathBuf,
        /// The version it reported.
        version: i32,
    },
    /// A capability kvmini needs is missing.
    #[error("this host's KVM lacks {0}, which kvmini needs")]
    MissingCapability(&'static str),
    /// Reading the supported CPUID failed.
    #[error("cannot read the CPUID that KVM supports")]
    Cpuid(#[source] kvm_ioctls::Error),
}

/// An open KVM system handle plus what kvmini caches from it.
#[derive(Debug)]
pub struct Kvm {
    kvm: kvm_ioctls::Kvm,
    cpuid: CpuId,
    path: PathBuf,
}

impl Kvm {
    /// Opens the KVM device at [`DEFAULT_DEVICE`], `/dev/kvm`. The library
    /// reads no environment: a program that lets its user choose another
    /// device passes the path to [`Kvm::open_path`].
    pub fn open() -> Result<Self, KvmError> {
        Self::open_path(Path::new(DEFAULT_DEVICE))
    }

    /// Opens the KVM device at `path` and checks that it can run kvmini
    /// guests. A path that does not exist is [`KvmError::Missing`] with
    /// that path; one this user may not open,
    /// [`KvmError::PermissionDenied`].
    pub fn open_path(path: &Path) -> Result<Self, KvmError> {
        let path = path.to_path_buf();
        let c_path =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| KvmError::Open {
                path: path.clone(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            })?;
        let kvm =
            kvm_ioctls::Kvm::new_with_path(&c_path).map_err(
                |e| match io::Error::from_raw_os_error(e.errno()).kind() {
                    io::ErrorKind::NotFound => KvmError::Missing(path.clone()),
                    io::ErrorKind::PermissionDenied => KvmError::PermissionDenied(path.clone()),
                    _ => KvmError::Open {
                        path: path.clone(),
                        source: io::Error::from_raw_os_error(e.errno()),
                    },
                },
            )?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(KvmError::ApiVersion { path, version });
        }
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::SyncRegs, "KVM_CAP_SYNC_REGS"),
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCapability(name));
            }
        }
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmError::Cpuid)?;
        Ok(Kvm { kvm, cpuid, path })
    }

    /// The underlying kvm-ioctls handle.
    pub fn handle(&self) -> &kvm_ioctls::Kvm {
        &self.kvm
    }

    /// The CPUID that KVM supports, given to every vCPU so that guests see
    /// (among others) SSE and long mode.
    pub fn supported_cpuid(&self) -> &CpuId {
        &self.cpuid
    }

    /// The device path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// True when a KVM device can be opened here; tests use it to skip (or, with
/// `KVMINI_REQUIRE_KVM=1`, fail) when there is none.
pub fn available() -> bool {
    Kvm::open().is_ok()
}

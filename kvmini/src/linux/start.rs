//! The process a Linux program starts as: its initial stack, laid out as
//! the System V x86-64 ABI and Linux lay it out (docs/linux.md).

use vm_memory::{Bytes, GuestAddress};

use super::LinuxError;
use crate::memory::GuestMemory;

/// `AT_NULL`: the end of the auxiliary vector.
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_EXECFN: u64 = 31;

/// What the initial stack tells a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// argv: the program path as given, then its arguments.
    pub args: Vec<Vec<u8>>,
    /// envp: `NAME=VALUE` each.
    pub env: Vec<Vec<u8>>,
    /// Where the program headers are in guest memory.
    pub phdr: u64,
    /// Size of one program header.
    pub phent: u64,
    /// Number of program headers.
    pub phnum: u64,
    /// The entry point.
    pub entry: u64,
    /// The 16 bytes `AT_RANDOM` points at.
    pub random: [u8; 16],
    /// `AT_UID`, `AT_EUID`.
    pub uid: u32,
    /// `AT_GID`, `AT_EGID`.
    pub gid: u32,
    /// `AT_HWCAP`: CPUID leaf 1 EDX.
    pub hwcap: u32,
}

/// Writes the initial stack below `top` (never below `bottom`) and
/// returns RSP: argc, argv, envp, the auxiliary vector, then the
/// strings and random bytes above them. RSP is 16-byte aligned.
pub fn write_initial_stack(
    mem: &GuestMemory,
    top: u64,
    bottom: u64,
    info: &StartInfo,
) -> Result<u64, LinuxError> {
    let too_big = LinuxError::ArgumentsTooLong;
    // The strings first, from the top down: each argument, the platform,
    // then the random bytes (8-byte aligned).
    let mut at = top;
    let mut argv = Vec::with_capacity(info.args.len());
    for arg in &info.args {
        argv.push(place(mem, &mut at, bottom, arg, true)?);
    }
    let mut envp = Vec::with_capacity(info.env.len());
    for var in &info.env {
        envp.push(place(mem, &mut at, bottom, var, true)?);
    }
    let platform = place(mem, &mut at, bottom, b"x86_64", true)?;
    at &= !7;
    let random = place(mem, &mut at, bottom, &info.random, false)?;
    let execfn = argv.first().copied().unwrap_or(0);
    let auxv = [
        (AT_PHDR, info.phdr),
        (AT_PHENT, info.phent),
        (AT_PHNUM, info.phnum),
        (AT_PAGESZ, 4096),
        (AT_BASE, 0),
        (AT_ENTRY, info.entry),
        (AT_UID, u64::from(info.uid)),
        (AT_EUID, u64::from(info.uid)),
        (AT_GID, u64::from(info.gid)),
        (AT_EGID, u64::from(info.gid)),
        (AT_SECURE, 0),
        (AT_HWCAP, u64::from(info.hwcap)),
        (AT_CLKTCK, 100),
        (AT_PLATFORM, platform),
        (AT_RANDOM, random),
        (AT_EXECFN, execfn),
        (AT_NULL, 0),
    ];
    let mut words: Vec<u64> = Vec::with_capacity(argv.len() + envp.len() + 3 + 2 * auxv.len());
    words.push(u64::try_from(argv.len()).map_err(|_| too_big.clone())?);
    words.extend(&argv);
    words.push(0); // end of argv
    words.extend(&envp);
    words.push(0); // end of envp
    for (key, value) in auxv {
        words.push(key);
        words.push(value);
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let len = u64::try_from(bytes.len()).map_err(|_| too_big.clone())?;
    let rsp = random
        .checked_sub(len)
        .map(|a| a & !15)
        .filter(|&a| a >= bottom)
        .ok_or(too_big)?;
    mem.write_slice(&bytes, GuestAddress(rsp))?;
    Ok(rsp)
}

/// Writes `bytes` (and a NUL after them with `nul`) just below `at`, not
/// below `bottom`, and moves `at` down to them.
fn place(
    mem: &GuestMemory,
    at: &mut u64,
    bottom: u64,
    bytes: &[u8],
    nul: bool,
) -> Result<u64, LinuxError> {
    let len = u64::try_from(bytes.len())
        .ok()
        .and_then(|len| len.checked_add(u64::from(nul)))
        .ok_or(LinuxError::ArgumentsTooLong)?;
    let start = at
        .checked_sub(len)
        .filter(|&a| a >= bottom)
        .ok_or(LinuxError::ArgumentsTooLong)?;
    mem.write_slice(bytes, GuestAddress(start))?;
    if nul {
        mem.write_obj(0u8, GuestAddress(start + len - 1))?;
    }
    *at = start;
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(args: &[&[u8]]) -> StartInfo {
        StartInfo {
            args: args.iter().map(|a| a.to_vec()).collect(),
            env: Vec::new(),
            phdr: 0x40_0040,
            phent: 56,
            phnum: 9,
            entry: 0x40_1000,
            random: *b"0123456789abcdef",
            uid: 1000,
            gid: 100,
            hwcap: 0x178b_fbff,
        }
    }

    fn word(mem: &GuestMemory, at: u64) -> u64 {
        mem.read_obj(GuestAddress(at)).unwrap()
    }

    fn string(mem: &GuestMemory, at: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut a = at;
        loop {
            let b: u8 = mem.read_obj(GuestAddress(a)).unwrap();
            if b == 0 {
                return out;
            }
            out.push(b);
            a += 1;
        }
    }

    #[test]
    fn the_stack_is_argc_argv_envp_auxv_and_aligned() {
        let mem = crate::memory::allocate(2 << 20).unwrap();
        let top = 0x1F_F000;
        let rsp =
            write_initial_stack(&mem, top, 0x10_0000, &info(&[b"/bin/wc", b"-l", b""])).unwrap();
        assert_eq!(rsp % 16, 0);
        assert_eq!(word(&mem, rsp), 3);
        let args: Vec<Vec<u8>> = (0..3)
            .map(|i| string(&mem, word(&mem, rsp + 8 + 8 * i)))
            .collect();
        assert_eq!(args, [b"/bin/wc".to_vec(), b"-l".to_vec(), Vec::new()]);
        assert_eq!(word(&mem, rsp + 32), 0, "argv ends");
        assert_eq!(word(&mem, rsp + 40), 0, "envp is empty");
        let mut aux = std::collections::BTreeMap::new();
        let mut at = rsp + 48;
        loop {
            let (key, value) = (word(&mem, at), word(&mem, at + 8));
            if key == AT_NULL {
                break;
            }
            assert!(aux.insert(key, value).is_none());
            at += 16;
        }
        assert_eq!(aux[&AT_PHDR], 0x40_0040);
        assert_eq!((aux[&AT_PHENT], aux[&AT_PHNUM]), (56, 9));
        assert_eq!(
            (aux[&AT_PAGESZ], aux[&AT_BASE], aux[&AT_ENTRY]),
            (4096, 0, 0x40_1000)
        );
        assert_eq!(
            (aux[&AT_UID], aux[&AT_EUID], aux[&AT_GID], aux[&AT_EGID]),
            (1000, 1000, 100, 100)
        );
        assert_eq!(
            (aux[&AT_SECURE], aux[&AT_CLKTCK], aux[&AT_HWCAP]),
            (0, 100, 0x178b_fbff)
        );
        assert_eq!(string(&mem, aux[&AT_PLATFORM]), b"x86_64");
        assert_eq!(string(&mem, aux[&AT_EXECFN]), b"/bin/wc");
        let mut random = [0u8; 16];
        mem.read_slice(&mut random, GuestAddress(aux[&AT_RANDOM]))
            .unwrap();
        assert_eq!(&random, b"0123456789abcdef");
        assert_eq!(aux.len(), 16);
        // Everything lies between RSP and the top.
        assert!(aux[&AT_RANDOM] + 16 <= top && aux[&AT_PLATFORM] < top);
    }

    #[test]
    fn the_environment_follows_argv_in_order() {
        let mem = crate::memory::allocate(2 << 20).unwrap();
        let mut with_env = info(&[b"/bin/env"]);
        with_env.env = vec![b"A=1".to_vec(), b"EMPTY=".to_vec(), b"B=x y".to_vec()];
        let rsp = write_initial_stack(&mem, 0x1F_F000, 0x10_0000, &with_env).unwrap();
        assert_eq!(rsp % 16, 0);
        assert_eq!((word(&mem, rsp), word(&mem, rsp + 16)), (1, 0));
        let env: Vec<Vec<u8>> = (0..3)
            .map(|i| string(&mem, word(&mem, rsp + 24 + 8 * i)))
            .collect();
        assert_eq!(env, with_env.env);
        assert_eq!(word(&mem, rsp + 48), 0, "envp ends");
        assert_eq!(word(&mem, rsp + 56), AT_PHDR, "auxv follows");
    }

    #[test]
    fn arguments_that_do_not_fit_are_refused() {
        let mem = crate::memory::allocate(2 << 20).unwrap();
        let big = vec![b'x'; 5000];
        let err = write_initial_stack(&mem, 0x1F_F000, 0x1F_E000, &info(&[&big])).unwrap_err();
        assert!(matches!(err, LinuxError::ArgumentsTooLong));
    }
}

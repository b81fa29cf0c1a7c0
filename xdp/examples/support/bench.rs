//! Pieces of the backend benchmark: per-CPU busy time from `/proc/stat`, the live-frame XDP
//! traffic generator and busy-polling socket options.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use floodgate_xdp::bpf::Program;

use crate::support::{thread_cpu_seconds, FloodResult};

/// Busy and softirq time of one CPU from `/proc/stat`, in seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq (everything but idle, iowait and steal).
    pub busy: f64,
    /// irq + softirq alone.
    pub softirq: f64,
}

impl std::ops::Sub for CpuTimes {
    type Output = CpuTimes;
    fn sub(self, o: CpuTimes) -> CpuTimes {
        CpuTimes {
            busy: self.busy - o.busy,
            softirq: self.softirq - o.softirq,
        }
    }
}

/// The `cpuN` line of `/proc/stat` (zeros if absent).
pub fn cpu_times(cpu: usize) -> CpuTimes {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let key = format!("cpu{cpu}");
    let Some(line) = s
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key.as_str()))
    else {
        return CpuTimes::default();
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let t = |i: usize| v.get(i).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // user nice system idle iowait irq softirq steal
    CpuTimes {
        busy: (t(0) + t(1) + t(2) + t(5) + t(6)) as f64 / hz,
        softirq: (t(5) + t(6)) as f64 / hz,
    }
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// The traffic generator of the `xdp` source: an XDP program that writes a random UDP source
/// port into the frame and redirects it to `ifindex` (the sender's veth), so that the frame
/// reaches the receiving veth through `ndo_xdp_xmit` as an XDP frame, not as an skb.
pub fn redirect_prog(ifindex: u32) -> Result<Program, String> {
    use floodgate_xdp::prog::{Cond, Insn, Size};
    // BPF_STX | BPF_MEM | BPF_H: *(u16 *)(dst + off) = src.
    let stx_h = |dst: u8, off: i16, src: u8| Insn {
        code: 0x03 | 0x60 | 0x08,
        regs: (dst & 0x0f) | (src << 4),
        off,
        imm: 0,
    };
    let insns = [
        Insn::mov64_reg(6, 1),
        Insn::call(7), // bpf_get_prandom_u32
        Insn::mov64_reg(7, 0),
        Insn::ldx(Size::W, 2, 6, 0), // xdp_md.data
        Insn::ldx(Size::W, 3, 6, 4), // xdp_md.data_end
        Insn::mov64_reg(4, 2),
        Insn::add64_imm(4, 42),
        Insn::jmp_reg(Cond::Gt, 4, 3, 1),
        stx_h(2, 34, 7), // UDP source port (IPv4 header without options)
        Insn::mov64_imm(1, ifindex as i32),
        Insn::mov64_imm(2, 0),
        Insn::call(23), // bpf_redirect
        Insn::exit(),
    ];
    Program::load_xdp("fgb_gen", &insns).map_err(|e| e.to_string())
}

/// Runs `prog` on `frame` with live frames (batches of `batch`) until `stop`: every run is a
/// real redirect out of the sender's veth. Counts the program runs.
pub fn flood_xdp(prog: &Program, frame: &[u8], batch: usize, stop: &AtomicBool) -> FloodResult {
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let mut sent = 0u64;
    // Long runs: each test run sets up and tears down its own page pool, which costs about 20 ms.
    const REPEAT: u32 = 1 << 16;
    while !stop.load(Ordering::Relaxed) {
        match prog.run_live(frame, REPEAT, batch as u32) {
            Ok(()) => {}
            Err(floodgate_xdp::BpfError::Syscall { source, .. })
                if source.raw_os_error() == Some(libc::EINTR) =>
            {
                continue
            }
            Err(e) => {
                eprintln!("backend_bench: live-frame test run: {e}");
                break;
            }
        }
        sent += REPEAT as u64;
    }
    FloodResult {
        sent,
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: thread_cpu_seconds() - cpu0,
    }
}

/// Preferred busy polling on a socket (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` 50 µs,
/// `SO_BUSY_POLL_BUDGET` = `budget`): a receive call then runs the device's NAPI poll itself.
pub fn set_busy_poll(fd: libc::c_int, budget: usize) {
    for (opt, val, what) in [
        (69, 1, "SO_PREFER_BUSY_POLL"),
        (libc::SO_BUSY_POLL, 50, "SO_BUSY_POLL"),
        (70, budget as libc::c_int, "SO_BUSY_POLL_BUDGET"),
    ] {
        // SAFETY: the option value is a c_int that lives for the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &val as *const libc::c_int as *const libc::c_void,
                4,
            )
        };
        if rc != 0 {
            eprintln!("backend_bench: {what}: {}", io::Error::last_os_error());
        }
    }
}

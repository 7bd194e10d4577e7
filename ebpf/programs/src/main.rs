//! bpfk eBPF programs: socket-level (cgroup sock_addr) and per-packet (TC)
//! service load balancing. User space: `bpfk-datapath`.
#![no_std]
#![no_main]

mod iter;
mod lb;
mod maps;
mod sock;
mod tc;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

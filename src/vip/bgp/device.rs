//! The interface the announcement lives on: a TUN device this process
//! creates and owns (not persistent), with the VIP on it as a host address
//! that BIRD's `direct` protocol turns into the announced route.
//!
//! The address goes when the process does (the kernel removes a TUN
//! device with its last open descriptor, so a `kill -9` withdraws at
//! once), and when the process stops renewing it: it is added with a
//! lifetime of one second (`netlink::ADDRESS_LIFETIME_S`), so a frozen
//! process's announcement ends within that second even though its BIRD
//! keeps the BGP session up. A live process removes it itself when it is
//! no longer eligible.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use rtnetlink::{Handle, LinkUnspec};

use crate::vip::netlink;

/// The owned device, and the VIP announced on it.
pub struct AnnounceDevice {
    /// Open for the process's life: closing it removes the device.
    _tun: File,
    handle: Handle,
    index: u32,
    name: String,
    vip: IpAddr,
}

impl AnnounceDevice {
    /// Creates the device `name` (it must not exist) and brings it up, with
    /// no address yet. Needs CAP_NET_ADMIN.
    pub async fn open(name: &str, vip: IpAddr) -> Result<Self, String> {
        if !netlink::has_capability(netlink::CAP_NET_ADMIN) {
            return Err(
                "vip.mode = \"bgp\" needs CAP_NET_ADMIN (to create its interface and \
                 add the VIP): run as root, or grant it (systemd: \
                 AmbientCapabilities=CAP_NET_ADMIN)"
                    .into(),
            );
        }
        let tun = open_tun(name).map_err(|e| format!("bgp.device {name:?}: {e}"))?;
        let handle = netlink::connection_on_own_thread().await?;
        let index = netlink::link_index(&handle, name)
            .await
            .ok_or_else(|| format!("bgp.device {name:?}: not found after creating it"))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| format!("bgp.device {name:?}: cannot bring it up: {e}"))?;
        Ok(AnnounceDevice {
            _tun: tun,
            handle,
            index,
            name: name.to_string(),
            vip,
        })
    }

    /// Adds the VIP to the device, or renews its lifetime there.
    pub async fn announce(&self) -> Result<(), String> {
        netlink::add_host_address(&self.handle, self.index, self.vip)
            .await
            .map_err(|e| format!("adding {} to {}: {e}", self.vip, self.name))
    }

    /// Removes the VIP from the device.
    pub async fn withdraw(&self) -> Result<(), String> {
        netlink::remove_host_address(&self.handle, self.index, self.vip)
            .await
            .map_err(|e| format!("removing {} from {}: {e}", self.vip, self.name))
    }

    /// Puts the VIP on `lo` for good (no lifetime), so the kernel takes
    /// traffic for it whether announced or not.
    pub async fn accept_on_loopback(&self) -> Result<(), String> {
        let lo = self.loopback().await?;
        netlink::add_host_address_for_good(&self.handle, lo, self.vip)
            .await
            .map_err(|e| format!("adding {} to lo: {e}", self.vip))
    }

    /// Takes the VIP off `lo` (at exit).
    pub async fn stop_accepting_on_loopback(&self) -> Result<(), String> {
        let lo = self.loopback().await?;
        netlink::remove_host_address(&self.handle, lo, self.vip)
            .await
            .map_err(|e| format!("removing {} from lo: {e}", self.vip))
    }

    async fn loopback(&self) -> Result<u32, String> {
        netlink::link_index(&self.handle, "lo")
            .await
            .ok_or_else(|| "no loopback interface \"lo\"".to_string())
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Creates TUN device `name`, owned by the returned descriptor.
fn open_tun(name: &str) -> std::io::Result<File> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: `ifreq` is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    // Exclusive: never a persistent device of the same name, which would
    // outlive this process.
    request.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which lives through
    // the call; the descriptor is open.
    let done = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &raw mut request) };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tun)
}

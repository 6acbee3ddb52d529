//! `netlink` mode: the holder makes the VIP a local address, announces it
//! (gratuitous ARP for IPv4, unsolicited neighbour advertisements for
//! IPv6), answers ARP and neighbour solicitations for it itself, and
//! removes it on release. Needs CAP_NET_ADMIN and CAP_NET_RAW.
//!
//! The VIP is added to `lo` as a host address (/32, /128), not to the
//! announcing interface. For IPv4 the node also sets that interface's
//! `arp_ignore = 1` (answer ARP only for addresses on the interface
//! itself) and `arp_announce = 2` (never use another interface's address
//! in ARP) at start-up, restoring both at exit; for IPv6 the kernel already
//! answers solicitations only for addresses of the interface they came in
//! on. The kernel then accepts traffic for the VIP but never answers for
//! it on the wire: only the holder's process does, while its lease runs.
//! A holder that is dead or frozen answers nothing, even in the second
//! before its address's lifetime runs out, so one MAC answers for the VIP
//! on the wire, the live holder's (the LVS direct-routing set-up, and
//! MetalLB's layer-2 speaker, answer the same way).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, CacheInfo};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

use super::{garp, ndp};

/// Lifetime of the added address, in seconds (the kernel's granularity).
pub const ADDRESS_LIFETIME_S: u32 = 1;

/// CAP_NET_ADMIN's bit in the capability sets.
pub(super) const CAP_NET_ADMIN: u32 = 12;
/// CAP_NET_RAW's bit.
const CAP_NET_RAW: u32 = 13;

/// The VIP on one interface.
pub struct NetlinkHolder {
    handle: Handle,
    interface: String,
    index: u32,
    /// Where the address is added: `lo` (see the module doc).
    address_index: u32,
    mac: Option<[u8; 6]>,
    address: IpAddr,
    garp_repeats: u32,
    /// The interface's `arp_ignore` and `arp_announce` before this node
    /// changed them, to put back at exit (IPv4).
    arp_sysctls: Option<(String, String)>,
}

impl NetlinkHolder {
    /// Checks privileges and the interface, and removes the VIP if a
    /// previous run left it there (a node that died holding it).
    pub async fn open(
        interface: &str,
        address: IpAddr,
        prefix_len: Option<u8>,
        garp_repeats: u32,
    ) -> Result<Self, String> {
        for (bit, name) in [
            (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
            (CAP_NET_RAW, "CAP_NET_RAW"),
        ] {
            if !has_capability(bit) {
                return Err(format!(
                    "vip.mode = \"netlink\" needs {name}: run as root, or grant it \
                     (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW; \
                     or setcap cap_net_admin,cap_net_raw+ep on the binary)"
                ));
            }
        }
        let handle = connection_on_own_thread().await?;
        let link = handle
            .link()
            .get()
            .match_name(interface.to_string())
            .execute()
            .try_next()
            .await
            .ok()
            .flatten()
            .ok_or_else(|| format!("vip.interface: no interface named {interface:?}"))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            });
        let address_index = link_index(&handle, "lo")
            .await
            .ok_or("no loopback interface \"lo\"")?;
        let host_bits = host_prefix(address);
        if let Some(prefix_len) = prefix_len.filter(|p| *p != host_bits) {
            // A /24 on lo would make the whole subnet local to this node.
            tracing::warn!(
                prefix_len,
                "vip.prefix_len is not used in netlink mode: the VIP goes on lo as a host \
                 address (/{host_bits}), and the node reaches its subnet through the \
                 interface's own address"
            );
        }
        let arp_sysctls = if address.is_ipv4() {
            let old = (
                read_sysctl(interface, "arp_ignore")?,
                read_sysctl(interface, "arp_announce")?,
            );
            write_sysctl(interface, "arp_ignore", "1")?;
            write_sysctl(interface, "arp_announce", "2")?;
            tracing::info!(
                interface,
                "set arp_ignore = 1 and arp_announce = 2 on the VIP's interface (restored at exit): \
                 only this process answers ARP for the VIP, and only while it holds it"
            );
            Some(old)
        } else {
            None
        };
        let holder = NetlinkHolder {
            handle,
            interface: interface.to_string(),
            index: link.header.index,
            address_index,
            mac,
            address,
            garp_repeats,
            arp_sysctls,
        };
        // Earlier versions put an IPv6 VIP on the interface itself.
        for index in [holder.index, holder.address_index] {
            if holder.is_present_on(index).await {
                tracing::warn!(vip = %address, interface, "VIP found at start-up (left by a previous run); removing it");
                holder.remove_from(index).await?;
            }
        }
        Ok(holder)
    }

    /// Whether the VIP is a local address of this node now.
    pub async fn is_present(&self) -> bool {
        self.is_present_on(self.address_index).await
    }

    async fn is_present_on(&self, index: u32) -> bool {
        has_address(&self.handle, index, self.address).await
    }

    /// Adds the VIP to the interface, or renews it there. The address is
    /// added with a lifetime of [`ADDRESS_LIFETIME_S`], renewed at every
    /// leadership confirmation: if this process dies or freezes while
    /// holding it, the kernel itself removes it shortly after, so a dead
    /// holder's kernel does not go on answering ARP for the VIP.
    pub async fn add(&self) -> Result<(), String> {
        add_host_address(&self.handle, self.address_index, self.address)
            .await
            .map_err(|e| format!("adding {} to {}: {e}", self.address, self.interface))
    }

    /// Removes the VIP (already gone is fine).
    pub async fn remove(&self) -> Result<(), String> {
        self.remove_from(self.address_index).await
    }

    async fn remove_from(&self, index: u32) -> Result<(), String> {
        remove_host_address(&self.handle, index, self.address)
            .await
            .map_err(|e| format!("removing {} from {}: {e}", self.address, self.interface))
    }

    /// A socket ready to announce the VIP, a gratuitous ARP (IPv4) or an
    /// unsolicited neighbour advertisement (IPv6) per call, on an
    /// Ethernet-like interface (`None` otherwise).
    pub fn announcer(&self) -> Option<AnnouncerTarget> {
        Some(AnnouncerTarget {
            index: self.index,
            mac: self.mac?,
            address: self.address,
        })
    }

    /// A socket to read ARP requests or neighbour solicitations for the VIP
    /// on and answer them, on an Ethernet-like interface (`None` otherwise).
    pub fn neighbour_socket(&self) -> Option<std::io::Result<NeighbourSocket>> {
        let mac = self.mac?;
        Some(match self.address {
            IpAddr::V4(vip) => garp::ArpSocket::open(self.index)
                .map(|socket| NeighbourSocket::Arp(socket, mac, vip)),
            IpAddr::V6(vip) => ndp::NdpSocket::open(self.index, vip, mac).map(NeighbourSocket::Ndp),
        })
    }

    /// Puts back the interface's ARP settings as they were before start-up.
    pub fn restore(&self) {
        if let Some((ignore, announce)) = &self.arp_sysctls {
            for (name, value) in [("arp_ignore", ignore), ("arp_announce", announce)] {
                if let Err(error) = write_sysctl(&self.interface, name, value) {
                    tracing::warn!(%error, "cannot restore {name}");
                }
            }
        }
    }

    /// How many announcements an acquisition sends: the first at once,
    /// the rest spread over the first second, so a neighbour that missed
    /// one still moves.
    pub fn announcements(&self) -> u32 {
        self.garp_repeats.max(1)
    }
}

/// Where announcements go, copied out of the holder: opening (and closing)
/// a packet socket waits in the kernel for an RCU grace period
/// (`synchronize_net`: 8 to 20 ms on an idle test machine, more under
/// load), so it is done on a blocking thread, never on the runtime's.
#[derive(Debug, Clone, Copy)]
pub struct AnnouncerTarget {
    index: u32,
    mac: [u8; 6],
    address: IpAddr,
}

impl AnnouncerTarget {
    /// Opens the socket (blocks: see above).
    pub fn open(self) -> std::io::Result<Announcer> {
        match self.address {
            IpAddr::V4(vip) => garp::ArpSocket::open(self.index)
                .map(|socket| Announcer::Arp(socket, garp::announcement(self.mac, vip))),
            IpAddr::V6(vip) => {
                ndp::NdpSocket::sender(self.index, vip, self.mac).map(Announcer::Ndp)
            }
        }
    }
}

/// An open socket that announces the VIP: opened before the lease is
/// checked, so that between the check and the frame leaving there is one
/// system call. (A process frozen inside that window still sends its frame
/// when it resumes; nothing in user space can close it.)
pub enum Announcer {
    /// A gratuitous ARP, ready to send.
    Arp(garp::ArpSocket, [u8; 42]),
    /// Unsolicited neighbour advertisements.
    Ndp(ndp::NdpSocket),
}

impl Announcer {
    /// Sends one announcement now.
    pub fn send(&self) -> std::io::Result<()> {
        match self {
            Announcer::Arp(socket, frame) => socket.send(frame, [0xff; 6]),
            Announcer::Ndp(socket) => socket.advertise(None),
        }
    }
}

/// Where the holder hears who asks for the VIP, and answers.
pub enum NeighbourSocket {
    /// ARP on the interface, answered as `mac` for the IPv4 VIP.
    Arp(garp::ArpSocket, [u8; 6], Ipv4Addr),
    /// Neighbour discovery on the interface, for the IPv6 VIP.
    Ndp(ndp::NdpSocket),
}

impl NeighbourSocket {
    /// Reads one question (`WouldBlock` when none is waiting) and, if it
    /// asks for the VIP and `may_answer()` says so at that moment, answers
    /// it. Only a failed read is an error; a failed answer is logged.
    pub fn answer_one(
        &self,
        buf: &mut [u8],
        may_answer: impl FnOnce() -> bool,
    ) -> std::io::Result<()> {
        let answered = match self {
            NeighbourSocket::Arp(socket, mac, vip) => {
                let n = socket.recv(buf)?;
                match garp::request_for(&buf[..n], *vip) {
                    Some(asker) if may_answer() => {
                        socket.send(&garp::reply(*mac, *vip, asker), asker.0)
                    }
                    _ => Ok(()),
                }
            }
            NeighbourSocket::Ndp(socket) => match socket.recv_solicitation(buf)? {
                Some(asker) if may_answer() => socket.advertise(Some(asker)),
                _ => Ok(()),
            },
        };
        if let Err(error) = answered {
            crate::warn_limited!("vip answer", %error, "answer for the VIP (ARP reply or neighbour advertisement) not sent");
        }
        Ok(())
    }
}

impl std::os::fd::AsRawFd for NeighbourSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            NeighbourSocket::Arp(socket, ..) => socket.as_raw_fd(),
            NeighbourSocket::Ndp(socket) => socket.as_raw_fd(),
        }
    }
}

/// The prefix length of `address` alone: how the VIP sits on `lo`.
/// Adds `address` as a host address (/32, /128) to interface `index`, or
/// renews it there, with a lifetime of [`ADDRESS_LIFETIME_S`]: unless it is
/// renewed, the kernel removes it by itself (a holder that died or froze).
pub(super) async fn add_host_address(
    handle: &Handle,
    index: u32,
    address: IpAddr,
) -> Result<(), rtnetlink::Error> {
    let mut request = handle
        .address()
        .add(index, address, host_prefix(address))
        .replace();
    let mut lifetime = CacheInfo::default();
    lifetime.ifa_preferred = ADDRESS_LIFETIME_S;
    lifetime.ifa_valid = ADDRESS_LIFETIME_S;
    request
        .message_mut()
        .attributes
        .push(AddressAttribute::CacheInfo(lifetime));
    request.execute().await
}

/// Adds `address` as a host address to interface `index` with no
/// lifetime (already there is fine).
pub(super) async fn add_host_address_for_good(
    handle: &Handle,
    index: u32,
    address: IpAddr,
) -> Result<(), rtnetlink::Error> {
    handle
        .address()
        .add(index, address, host_prefix(address))
        .replace()
        .execute()
        .await
}

/// Removes host address `address` from interface `index` (already gone
/// is fine).
pub(super) async fn remove_host_address(
    handle: &Handle,
    index: u32,
    address: IpAddr,
) -> Result<(), rtnetlink::Error> {
    let message = match address {
        IpAddr::V4(address) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(address, host_prefix(address.into()))
            .build(),
        IpAddr::V6(address) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(address, host_prefix(address.into()))
            .build(),
    };
    match handle.address().del(message).execute().await {
        Ok(()) => Ok(()),
        Err(_) if !has_address(handle, index, address).await => Ok(()),
        Err(e) => Err(e),
    }
}

/// The index of interface `name`, if there is one.
pub(super) async fn link_index(handle: &Handle, name: &str) -> Option<u32> {
    handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .ok()
        .flatten()
        .map(|link| link.header.index)
}

/// Whether interface `index` has `address` now.
pub(super) async fn has_address(handle: &Handle, index: u32, address: IpAddr) -> bool {
    handle
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(address)
        .execute()
        .try_next()
        .await
        .is_ok_and(|found| found.is_some())
}

fn host_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

fn sysctl_path(interface: &str, name: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{interface}/{name}")
}

fn read_sysctl(interface: &str, name: &str) -> Result<String, String> {
    std::fs::read_to_string(sysctl_path(interface, name))
        .map(|v| v.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", sysctl_path(interface, name)))
}

fn write_sysctl(interface: &str, name: &str, value: &str) -> Result<(), String> {
    std::fs::write(sysctl_path(interface, name), value)
        .map_err(|e| format!("writing {}: {e}", sysctl_path(interface, name)))
}

/// A netlink connection whose socket lives on a thread of its own, with a
/// runtime of its own. The kernel handles an address change inside the
/// sending system call, under its rtnl lock, which every link and address
/// change on the machine takes (and a network namespace's removal holds
/// for long): a send can block its thread for 100 ms. On one of the
/// node's runtime threads, that stalled whatever else was queued there,
/// lease confirmations included, and a live leader's lease lapsed as a
/// partition healed (netns drill: a renewal took 85 ms, and the process
/// ran nothing for 116 ms). Requests reach the connection over a channel;
/// the node's tasks only wait for the answers.
pub(super) async fn connection_on_own_thread() -> Result<Handle, String> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raftlb-netlink".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = sender.send(Err(format!("netlink runtime: {error}")));
                    return;
                }
            };
            runtime.block_on(async move {
                match rtnetlink::new_connection() {
                    Ok((connection, handle, _)) => {
                        let _ = sender.send(Ok(handle));
                        // Ends when every handle is dropped.
                        connection.await;
                    }
                    Err(error) => {
                        let _ = sender.send(Err(format!("netlink socket: {error}")));
                    }
                }
            });
        })
        .map_err(|e| format!("netlink thread: {e}"))?;
    receiver
        .await
        .map_err(|_| "netlink thread ended before it connected".to_string())?
}

/// Whether this process has capability `bit` in its effective set.
pub(super) fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| set & (1 << bit) != 0)
}

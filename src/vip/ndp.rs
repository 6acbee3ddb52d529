//! IPv6 neighbour discovery for the VIP (RFC 4861): what [`super::garp`]
//! does for IPv4. The holder sends unsolicited neighbour advertisements
//! when it takes the VIP (the IPv6 gratuitous ARP), and answers neighbour
//! solicitations for it itself while it holds it. The VIP lives on `lo`,
//! where the kernel accepts traffic for it but never answers solicitations
//! on the wire for it (it answers only for addresses of the interface the
//! solicitation came in on), so a dead or frozen holder answers nothing.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// ICMPv6 neighbour solicitation.
const NEIGHBOUR_SOLICITATION: u8 = 135;
/// ICMPv6 neighbour advertisement.
const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// Neighbour discovery is link-local: sent with, and only accepted with,
/// hop limit 255 (RFC 4861 section 7.1).
const HOP_LIMIT: u32 = 255;
/// linux/icmpv6.h, not in the libc crate.
const ICMP6_FILTER: libc::c_int = 1;
/// All nodes on the link: where unsolicited advertisements go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbour advertisement for `vip` at `mac`: ICMPv6 header, flags
/// (Override always; Solicited for an answer), the target and its
/// link-layer address option. The kernel fills in the checksum.
pub fn advertisement(mac: [u8; 6], vip: Ipv6Addr, solicited: bool) -> [u8; 32] {
    let mut message = [0u8; 32];
    message[0] = NEIGHBOUR_ADVERTISEMENT;
    message[4] = 0x20 | if solicited { 0x40 } else { 0 };
    message[8..24].copy_from_slice(&vip.octets());
    // Option 2, target link-layer address, 1 × 8 bytes long.
    message[24] = 2;
    message[25] = 1;
    message[26..32].copy_from_slice(&mac);
    message
}

/// Whether an ICMPv6 `message` that arrived with `hop_limit` is a valid
/// neighbour solicitation for `vip`.
pub fn solicits(message: &[u8], hop_limit: Option<i32>, vip: Ipv6Addr) -> bool {
    message.len() >= 24
        && message[0] == NEIGHBOUR_SOLICITATION
        && message[1] == 0
        && hop_limit == Some(HOP_LIMIT as i32)
        && message[8..24] == vip.octets()
}

/// The solicited-node multicast group of `address` (RFC 4291 2.7.1),
/// where solicitations for it are sent.
pub fn solicited_node_group(address: Ipv6Addr) -> Ipv6Addr {
    let o = address.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// A raw ICMPv6 socket on one interface that reads solicitations for the
/// VIP and sends advertisements for it; non-blocking, closed on drop.
pub struct NdpSocket {
    socket: Socket,
    index: u32,
    vip: Ipv6Addr,
    mac: [u8; 6],
}

impl NdpSocket {
    /// Opens it on interface `index` for `vip` at `mac` (needs
    /// CAP_NET_RAW) to answer solicitations: only those pass its filter,
    /// and it joins the VIP's solicited-node group so that they are
    /// delivered.
    pub fn open(index: u32, vip: Ipv6Addr, mac: [u8; 6]) -> io::Result<NdpSocket> {
        let ndp = NdpSocket::sender(index, vip, mac)?;
        // struct icmp6_filter: a set bit blocks that type.
        let mut filter = [u32::MAX; 8];
        filter[usize::from(NEIGHBOUR_SOLICITATION >> 5)] &= !(1 << (NEIGHBOUR_SOLICITATION & 31));
        // SAFETY: setsockopt reads the 32 bytes of `filter`, the size of
        // struct icmp6_filter.
        let set = unsafe {
            libc::setsockopt(
                ndp.socket.as_raw_fd(),
                libc::IPPROTO_ICMPV6,
                ICMP6_FILTER,
                filter.as_ptr().cast(),
                std::mem::size_of_val(&filter) as libc::socklen_t,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        ndp.socket.set_recv_hoplimit_v6(true)?;
        ndp.socket
            .join_multicast_v6(&solicited_node_group(vip), index)?;
        Ok(ndp)
    }

    /// Opens it only to send advertisements (needs CAP_NET_RAW).
    pub fn sender(index: u32, vip: Ipv6Addr, mac: [u8; 6]) -> io::Result<NdpSocket> {
        let socket = Socket::new(
            Domain::IPV6,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::ICMPV6),
        )?;
        socket.bind_device_by_index_v6(std::num::NonZeroU32::new(index))?;
        socket.set_unicast_hops_v6(HOP_LIMIT)?;
        socket.set_multicast_hops_v6(HOP_LIMIT)?;
        socket.set_multicast_if_v6(index)?;
        socket.set_multicast_loop_v6(false)?;
        Ok(NdpSocket {
            socket,
            index,
            vip,
            mac,
        })
    }

    /// Reads one message into `message` (`WouldBlock` when none is
    /// waiting): the asker's address if it solicits the VIP (unspecified
    /// for a duplicate address probe), `None` for anything else.
    pub fn recv_solicitation(&self, message: &mut [u8]) -> io::Result<Option<Ipv6Addr>> {
        let mut control = [0u64; 8];
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut part = libc::iovec {
            iov_base: message.as_mut_ptr().cast(),
            iov_len: message.len(),
        };
        // SAFETY: all-zero is a valid msghdr; every pointer is set below.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_name = (&raw mut from).cast();
        header.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        header.msg_iov = &raw mut part;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: recvmsg writes within the buffers the header points to,
        // which live until it returns.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &raw mut header, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut hop_limit = None;
        // SAFETY: the CMSG macros walk the control buffer recvmsg filled,
        // within msg_controllen.
        unsafe {
            let mut item = libc::CMSG_FIRSTHDR(&raw const header);
            while !item.is_null() {
                if (*item).cmsg_level == libc::IPPROTO_IPV6
                    && (*item).cmsg_type == libc::IPV6_HOPLIMIT
                {
                    hop_limit = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(item).cast::<libc::c_int>(),
                    ));
                }
                item = libc::CMSG_NXTHDR(&raw const header, item);
            }
        }
        let asker = Ipv6Addr::from(from.sin6_addr.s6_addr);
        Ok(solicits(&message[..n as usize], hop_limit, self.vip).then_some(asker))
    }

    /// Advertises the VIP: in answer to `asker` (solicited), or to all
    /// nodes (unsolicited, the IPv6 gratuitous ARP) when `asker` is `None`
    /// or unspecified (a duplicate address probe, answered to all).
    pub fn advertise(&self, asker: Option<Ipv6Addr>) -> io::Result<()> {
        let asker = asker.filter(|a| !a.is_unspecified());
        let message = advertisement(self.mac, self.vip, asker.is_some());
        let to = SocketAddrV6::new(asker.unwrap_or(ALL_NODES), 0, 0, self.index);
        self.socket.send_to(&message, &to.into()).map(|_| ())
    }
}

impl AsRawFd for NdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0x12, 0x3456);

    #[test]
    fn an_advertisement_names_the_vip_and_the_holders_mac() {
        let mac = [2, 0, 0, 0, 0, 9];
        let answer = advertisement(mac, VIP, true);
        assert_eq!(answer[0], 136);
        assert_eq!(answer[4], 0x60, "solicited and override");
        assert_eq!(&answer[8..24], &VIP.octets());
        assert_eq!(&answer[24..26], &[2, 1], "target link-layer address option");
        assert_eq!(&answer[26..32], &mac);
        let unsolicited = advertisement(mac, VIP, false);
        assert_eq!(unsolicited[4], 0x20, "override only");
    }

    #[test]
    fn only_a_link_local_solicitation_for_the_vip_is_answered() {
        let mut asks = [0u8; 32];
        asks[0] = 135;
        asks[8..24].copy_from_slice(&VIP.octets());
        assert!(solicits(&asks, Some(255), VIP));
        assert!(!solicits(&asks, Some(64), VIP), "routed from elsewhere");
        assert!(!solicits(&asks, None, VIP));
        assert!(!solicits(&asks[..20], Some(255), VIP), "truncated");
        let other = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0x12, 0x3457);
        assert!(!solicits(&asks, Some(255), other));
        let mut advert = asks;
        advert[0] = 136;
        assert!(!solicits(&advert, Some(255), VIP));
    }

    #[test]
    fn the_solicited_node_group_takes_the_last_24_bits() {
        assert_eq!(
            solicited_node_group(VIP),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().expect("address")
        );
    }
}

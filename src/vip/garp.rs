//! ARP for the VIP, from user space. Gratuitous ARP: the new VIP holder
//! tells every neighbour on the segment that the address now lives at its
//! MAC, so clients and routers move at once instead of when their ARP entry
//! expires (keepalived does the same). Replies: the kernel is told not to
//! answer ARP for the VIP (see `netlink`), and the holder answers who-has
//! requests itself while its lease runs, so a dead or frozen holder's
//! kernel never answers for it.
//!
//! The frame is a broadcast ARP request whose sender and target protocol
//! address are both the VIP (RFC 5227 "ARP announcement"), sent on an
//! `AF_PACKET` socket bound to the interface; it needs CAP_NET_RAW.

use std::io;
use std::net::Ipv4Addr;

/// Ethernet + ARP announcement for `vip` from `mac`.
pub fn announcement(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&[0xff; 6]); // destination: broadcast
    frame[6..12].copy_from_slice(&mac); // source
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    frame[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    frame[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    frame[18] = 6; // hardware address length
    frame[19] = 4; // protocol address length
    frame[20..22].copy_from_slice(&1u16.to_be_bytes()); // operation: request
    frame[22..28].copy_from_slice(&mac); // sender hardware address
    frame[28..32].copy_from_slice(&vip.octets()); // sender protocol address
    // target hardware address: zero (unknown)
    frame[38..42].copy_from_slice(&vip.octets()); // target protocol address
    frame
}

const ETH_P_ARP: u16 = 0x0806;

/// An ARP reply telling `to` (MAC, IPv4) that `vip` is at `mac`.
pub fn reply(mac: [u8; 6], vip: Ipv4Addr, to: ([u8; 6], Ipv4Addr)) -> [u8; 42] {
    let mut frame = announcement(mac, vip);
    frame[0..6].copy_from_slice(&to.0); // destination: the asker
    frame[20..22].copy_from_slice(&2u16.to_be_bytes()); // operation: reply
    frame[32..38].copy_from_slice(&to.0); // target hardware address
    frame[38..42].copy_from_slice(&to.1.octets()); // target protocol address
    frame
}

/// The asker (MAC, IPv4) if `frame` is an Ethernet ARP request for `vip`
/// (announcements, whose sender is the VIP itself, are not asks).
pub fn request_for(frame: &[u8], vip: Ipv4Addr) -> Option<([u8; 6], Ipv4Addr)> {
    if frame.len() < 42
        || frame[12..14] != ETH_P_ARP.to_be_bytes()
        || frame[14..16] != 1u16.to_be_bytes()
        || frame[16..18] != 0x0800u16.to_be_bytes()
        || frame[20..22] != 1u16.to_be_bytes()
        || frame[38..42] != vip.octets()
    {
        return None;
    }
    let sender_ip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    if sender_ip == vip {
        return None;
    }
    let sender_mac = <[u8; 6]>::try_from(&frame[22..28]).ok()?;
    Some((sender_mac, sender_ip))
}

/// A raw ARP socket on one interface, for reading requests and sending
/// replies; non-blocking, closed on drop.
pub struct ArpSocket {
    fd: std::os::fd::OwnedFd,
    index: u32,
}

impl ArpSocket {
    /// Opens it on interface `index` (needs CAP_NET_RAW).
    pub fn open(index: u32) -> io::Result<ArpSocket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls; the descriptor is owned by the
        // returned OwnedFd, and the address is fully set before bind.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(ETH_P_ARP.to_be()),
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut address: libc::sockaddr_ll = std::mem::zeroed();
            address.sll_family = libc::AF_PACKET as u16;
            address.sll_protocol = ETH_P_ARP.to_be();
            address.sll_ifindex = index as i32;
            let bound = libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if bound < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(ArpSocket { fd, index })
        }
    }

    /// Reads one frame into `buf` (`WouldBlock` when none is waiting).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Sends `frame` (a whole Ethernet frame) to `destination`.
    pub fn send(&self, frame: &[u8], destination: [u8; 6]) -> io::Result<()> {
        // SAFETY: the address structure is zero-initialised and fully set;
        // sendto reads frame.len() bytes of frame.
        unsafe {
            let mut address: libc::sockaddr_ll = std::mem::zeroed();
            address.sll_family = libc::AF_PACKET as u16;
            address.sll_protocol = ETH_P_ARP.to_be();
            address.sll_ifindex = self.index as i32;
            address.sll_halen = 6;
            address.sll_addr[..6].copy_from_slice(&destination);
            let sent = libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if sent < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    }
}

impl std::os::fd::AsRawFd for ArpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_names_the_vip_as_sender_and_target() {
        let mac = [0x02, 0, 0, 0, 0, 0x11];
        let frame = announcement(mac, Ipv4Addr::new(10, 77, 0, 100));
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &mac);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 1]);
        assert_eq!(&frame[22..28], &mac);
        assert_eq!(&frame[28..32], &[10, 77, 0, 100]);
        assert_eq!(&frame[32..38], &[0; 6]);
        assert_eq!(&frame[38..42], &[10, 77, 0, 100]);
    }

    #[test]
    fn a_request_for_the_vip_is_answered_to_its_asker() {
        let asker = ([0x02, 0, 0, 0, 0, 0x50], Ipv4Addr::new(10, 77, 0, 50));
        let vip = Ipv4Addr::new(10, 77, 0, 100);
        // A who-has from the asker is an announcement-shaped frame with
        // the asker as sender.
        let mut ask = announcement(asker.0, vip);
        ask[28..32].copy_from_slice(&asker.1.octets());
        assert_eq!(request_for(&ask, vip), Some(asker));
        assert_eq!(request_for(&ask, Ipv4Addr::new(10, 77, 0, 101)), None);
        // An announcement of the VIP is not a question.
        assert_eq!(request_for(&announcement(asker.0, vip), vip), None);
        let mac = [0x02, 0, 0, 0, 0, 0x11];
        let answer = reply(mac, vip, asker);
        assert_eq!(&answer[0..6], &asker.0);
        assert_eq!(&answer[20..22], &[0, 2]);
        assert_eq!(&answer[22..28], &mac);
        assert_eq!(&answer[28..32], &vip.octets());
        assert_eq!(&answer[32..38], &asker.0);
        assert_eq!(&answer[38..42], &asker.1.octets());
    }
}

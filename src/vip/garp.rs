//! Gratuitous ARP: the new VIP holder tells every neighbour on the segment
//! that the address now lives at its MAC, so clients and routers move at
//! once instead of when their ARP entry expires (keepalived does the same).
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

/// Sends one announcement for `vip` out of interface `index`.
pub fn send(index: u32, mac: [u8; 6], vip: Ipv4Addr) -> io::Result<()> {
    let frame = announcement(mac, vip);
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // address structure is zero-initialised and fully set before use.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut address: libc::sockaddr_ll = std::mem::zeroed();
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = ETH_P_ARP.to_be();
        address.sll_ifindex = index as i32;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let sent = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let result = if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        libc::close(fd);
        result
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
}

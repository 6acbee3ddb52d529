//! `netlink` mode: the holder adds the VIP to a named interface (like
//! `ip addr add VIP/32 dev IF`), announces it with gratuitous ARP, and
//! removes it on release. Needs CAP_NET_ADMIN (and CAP_NET_RAW for ARP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, CacheInfo};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

use super::garp;

/// Lifetime of the added address, in seconds (the kernel's granularity).
pub const ADDRESS_LIFETIME_S: u32 = 1;

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;
/// CAP_NET_RAW's bit.
const CAP_NET_RAW: u32 = 13;

/// The VIP on one interface.
pub struct NetlinkHolder {
    handle: Handle,
    interface: String,
    index: u32,
    mac: Option<[u8; 6]>,
    address: IpAddr,
    prefix_len: u8,
    garp_repeats: u32,
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
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
        tokio::spawn(connection);
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
        let holder = NetlinkHolder {
            handle,
            interface: interface.to_string(),
            index: link.header.index,
            mac,
            address,
            prefix_len: prefix_len.unwrap_or(if address.is_ipv4() { 32 } else { 128 }),
            garp_repeats,
        };
        if holder.is_present().await {
            tracing::warn!(vip = %address, interface, "VIP found on the interface at start-up (left by a previous run); removing it");
            holder.remove().await?;
        }
        Ok(holder)
    }

    /// Whether the VIP is on the interface now.
    pub async fn is_present(&self) -> bool {
        self.handle
            .address()
            .get()
            .set_link_index_filter(self.index)
            .set_address_filter(self.address)
            .execute()
            .try_next()
            .await
            .is_ok_and(|found| found.is_some())
    }

    /// Adds the VIP to the interface, or renews it there. The address is
    /// added with a lifetime of [`ADDRESS_LIFETIME_S`], renewed at every
    /// leadership confirmation: if this process dies or freezes while
    /// holding it, the kernel itself removes it shortly after, so a dead
    /// holder's kernel does not go on answering ARP for the VIP.
    pub async fn add(&self) -> Result<(), String> {
        let mut request = self
            .handle
            .address()
            .add(self.index, self.address, self.prefix_len)
            .replace();
        let mut lifetime = CacheInfo::default();
        lifetime.ifa_preferred = ADDRESS_LIFETIME_S;
        lifetime.ifa_valid = ADDRESS_LIFETIME_S;
        request
            .message_mut()
            .attributes
            .push(AddressAttribute::CacheInfo(lifetime));
        request
            .execute()
            .await
            .map_err(|e| format!("adding {} to {}: {e}", self.address, self.interface))
    }

    /// Removes the VIP from the interface (already gone is fine).
    pub async fn remove(&self) -> Result<(), String> {
        let message = match self.address {
            IpAddr::V4(address) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(self.index)
                .address(address, self.prefix_len)
                .build(),
            IpAddr::V6(address) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(self.index)
                .address(address, self.prefix_len)
                .build(),
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(_) if !self.is_present().await => Ok(()),
            Err(e) => Err(format!(
                "removing {} from {}: {e}",
                self.address, self.interface
            )),
        }
    }

    /// Sends one gratuitous ARP now (IPv4 on an Ethernet-like interface).
    pub fn announce_once(&self) {
        let (IpAddr::V4(vip), Some(mac)) = (self.address, self.mac) else {
            return;
        };
        if let Err(error) = garp::send(self.index, mac, vip) {
            tracing::warn!(%error, interface = %self.interface, "gratuitous ARP not sent");
        }
    }

    /// How many announcements an acquisition sends: the first at once,
    /// the rest spread over the first second, so a neighbour that missed
    /// one still moves.
    pub fn announcements(&self) -> u32 {
        self.garp_repeats.max(1)
    }
}

/// Whether this process has capability `bit` in its effective set.
fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| set & (1 << bit) != 0)
}

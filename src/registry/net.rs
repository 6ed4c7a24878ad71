//! Where registry connections may go (the SSRF guard). Every pod author chooses which registry pullgate
//! talks to, so every address pullgate dials — registry, mirror, redirect hop, token service — passes
//! [`NetworkPolicy::check`]: IP literals before the request is made, host names inside the DNS resolver
//! reqwest uses ([`GuardedResolver`]), so the address checked is the address connected to (no second
//! lookup that a rebinding DNS server could answer differently).
//!
//! Built-in refusals: link-local (169.254.0.0/16, fe80::/10), cloud metadata (169.254.169.254,
//! fd00:ec2::254, 100.100.100.200) and unspecified addresses (0.0.0.0/8, ::); in `serve` also loopback
//! (127.0.0.0/8, ::1). `network.denyCIDRs` adds ranges, `network.allowCIDRs` opens them; the most
//! specific range containing an address decides, a refusal wins a tie. IPv4-mapped IPv6 addresses are
//! judged as the IPv4 address they carry; every spelling of an address (`2130706433`, `0x7f.0.0.1`,
//! `127.1`, `[::ffff:7f00:1]`) reaches the check as the address itself.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::NetworkSettings;

/// Why a range refuses addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    LinkLocal,
    CloudMetadata,
    Unspecified,
    Loopback,
    /// A range of `network.denyCIDRs`.
    Denied,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LinkLocal => "link-local",
            Self::CloudMetadata => "a cloud metadata address",
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback (pullgate's own pod, not the node)",
            Self::Denied => "in a denied range",
        })
    }
}

/// An address the policy refuses. Carried through reqwest's error chain, so the classifier can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address {address} is {class}: refused by network.denyCIDRs")]
pub struct Refused {
    pub address: IpAddr,
    pub class: Class,
}

/// Which rule wins a tie at the same prefix length: settings beat built-ins, a refusal beats an allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    BuiltIn,
    Allowed,
    Denied,
}

/// What may be dialled.
#[derive(Debug, Clone)]
pub struct NetworkPolicy {
    /// (range, rank, why it refuses when it does)
    rules: Vec<(IpNet, Rank, Class)>,
}

/// Whether loopback addresses may be dialled: `check` runs on the user's own machine, `serve` in a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loopback {
    Allowed,
    Refused,
}

fn net(text: &str) -> IpNet {
    // The built-in ranges below are valid literals.
    text.parse()
        .unwrap_or_else(|_| IpNet::from(IpAddr::from([0, 0, 0, 0])))
}

impl NetworkPolicy {
    /// The built-in refusals, then `settings`.
    pub fn new(settings: &NetworkSettings, loopback: Loopback) -> Self {
        let mut rules = vec![
            (net("169.254.0.0/16"), Rank::BuiltIn, Class::LinkLocal),
            (net("fe80::/10"), Rank::BuiltIn, Class::LinkLocal),
            (
                net("169.254.169.254/32"),
                Rank::BuiltIn,
                Class::CloudMetadata,
            ),
            (
                net("fd00:ec2::254/128"),
                Rank::BuiltIn,
                Class::CloudMetadata,
            ),
            (
                net("100.100.100.200/32"),
                Rank::BuiltIn,
                Class::CloudMetadata,
            ),
            (net("0.0.0.0/8"), Rank::BuiltIn, Class::Unspecified),
            (net("::/128"), Rank::BuiltIn, Class::Unspecified),
        ];
        if loopback == Loopback::Refused {
            rules.push((net("127.0.0.0/8"), Rank::BuiltIn, Class::Loopback));
            rules.push((net("::1/128"), Rank::BuiltIn, Class::Loopback));
        }
        rules.extend(
            settings
                .deny_cidrs
                .iter()
                .map(|range| (range.trunc(), Rank::Denied, Class::Denied)),
        );
        rules.extend(
            settings
                .allow_cidrs
                .iter()
                .map(|range| (range.trunc(), Rank::Allowed, Class::Denied)),
        );
        Self { rules }
    }

    /// Refuse `address` when the most specific range containing it refuses (at equal length, settings
    /// beat built-ins and a refusal beats an allowance).
    pub fn check(&self, address: IpAddr) -> Result<(), Refused> {
        let address = address.to_canonical();
        let decision = self
            .rules
            .iter()
            .filter(|(range, _, _)| range.contains(&address))
            .max_by_key(|(range, rank, _)| (range.prefix_len(), *rank));
        match decision {
            Some((_, Rank::BuiltIn | Rank::Denied, class)) => Err(Refused {
                address,
                class: *class,
            }),
            _ => Ok(()),
        }
    }
}

/// reqwest's DNS resolver, answering only addresses the policy allows: a name whose every address is
/// refused fails with [`Refused`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Arc<NetworkPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(why)) => Err(Box::new(why) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn policy(deny: &[&str], allow: &[&str], loopback: Loopback) -> NetworkPolicy {
        NetworkPolicy::new(
            &NetworkSettings {
                deny_cidrs: deny.iter().map(|d| d.parse().expect("cidr")).collect(),
                allow_cidrs: allow.iter().map(|a| a.parse().expect("cidr")).collect(),
            },
            loopback,
        )
    }

    #[rustfmt::skip] // one case per line: the table reads as a table
    #[rstest]
    #[case::metadata("169.254.169.254", &[], &[], Loopback::Allowed, Some(Class::CloudMetadata))]
    #[case::link_local("169.254.1.1", &[], &[], Loopback::Allowed, Some(Class::LinkLocal))]
    #[case::link_local_v6("fe80::1", &[], &[], Loopback::Allowed, Some(Class::LinkLocal))]
    #[case::aws_v6_metadata("fd00:ec2::254", &[], &[], Loopback::Allowed, Some(Class::CloudMetadata))]
    #[case::alibaba_metadata("100.100.100.200", &[], &[], Loopback::Allowed, Some(Class::CloudMetadata))]
    #[case::unspecified("0.0.0.0", &[], &[], Loopback::Allowed, Some(Class::Unspecified))]
    #[case::unspecified_v6("::", &[], &[], Loopback::Allowed, Some(Class::Unspecified))]
    #[case::loopback_in_serve("127.0.0.1", &[], &[], Loopback::Refused, Some(Class::Loopback))]
    #[case::loopback_v6_in_serve("::1", &[], &[], Loopback::Refused, Some(Class::Loopback))]
    #[case::mapped_loopback_in_serve("::ffff:127.0.0.1", &[], &[], Loopback::Refused, Some(Class::Loopback))]
    #[case::loopback_in_check("127.0.0.1", &[], &[], Loopback::Allowed, None)]
    #[case::private_allowed("10.1.2.3", &[], &[], Loopback::Refused, None)]
    #[case::public_allowed("93.184.216.34", &[], &[], Loopback::Refused, None)]
    #[case::denied_range("10.1.2.3", &["10.0.0.0/8"], &[], Loopback::Refused, Some(Class::Denied))]
    #[case::allowed_loopback("127.0.0.1", &[], &["127.0.0.0/8"], Loopback::Refused, None)]
    #[case::specific_deny_beats_allow("127.0.0.2", &["127.0.0.2/32"], &["127.0.0.0/8"], Loopback::Refused, Some(Class::Denied))]
    #[case::allowing_link_local_keeps_metadata("169.254.169.254", &[], &["169.254.0.0/16"], Loopback::Refused, Some(Class::CloudMetadata))]
    #[case::metadata_explicitly_allowed("169.254.169.254", &[], &["169.254.169.254/32"], Loopback::Refused, None)]
    #[case::tie_refuses("10.0.0.1", &["10.0.0.0/8"], &["10.0.0.0/8"], Loopback::Refused, Some(Class::Denied))]
    fn addresses_are_judged_by_the_most_specific_range(
        #[case] address: &str,
        #[case] deny: &[&str],
        #[case] allow: &[&str],
        #[case] loopback: Loopback,
        #[case] refused: Option<Class>,
    ) {
        let address: IpAddr = address.parse().expect("address");
        let result = policy(deny, allow, loopback).check(address);
        assert_eq!(result.err().map(|r| r.class), refused);
    }

    #[rstest]
    #[case::decimal("2130706433")]
    #[case::hex("0x7f.0.0.1")]
    #[case::short("127.1")]
    #[case::mapped("[::ffff:7f00:1]")]
    fn every_spelling_of_loopback_is_the_address_itself(#[case] host: &str) {
        let url = reqwest::Url::parse(&format!("https://{host}:5000/v2/")).expect("url");
        let address = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            other => panic!("{host} parsed as {other:?}"),
        };
        let refused = policy(&[], &[], Loopback::Refused).check(address);
        assert_eq!(refused.err().map(|r| r.class), Some(Class::Loopback));
    }

    #[test]
    fn the_refusal_names_the_address_and_why() {
        let refused = policy(&[], &[], Loopback::Refused)
            .check("169.254.169.254".parse().expect("address"))
            .expect_err("refused");
        assert_eq!(
            refused.to_string(),
            "address 169.254.169.254 is a cloud metadata address: refused by network.denyCIDRs"
        );
    }
}

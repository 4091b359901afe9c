//! Where the server is reached from, and the URLs it hands out.
//!
//! Owns: the rule for the host in every URL. With `server.public_url` set, it wins. Without it
//! nothing is fixed, because each person may reach the server by another name (`localhost` on
//! the server itself, `192.168.1.10` or `studio.lan` elsewhere on the LAN): links and media URLs
//! are relative paths, an RTMP push URL takes the host name the request came in by, and an
//! email link takes the request's host only when that names this machine, else the machine's
//! first LAN address, so a forged `Host` header never reaches a mail.
//! Calls: the operating system (interface addresses, host name).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::Config;

/// How the URLs handed out are built.
#[derive(Debug, Clone)]
pub struct Site {
    /// `server.public_url` without a trailing slash, when set.
    public_url: Option<String>,
    /// Where the HTTP server listens (its port is the one for derived links).
    listen: SocketAddr,
    /// Where nginx takes RTMP pushes (rtmp backend).
    rtmp_listen: SocketAddr,
    /// `media.rtmp.public_host`, when set.
    rtmp_public_host: Option<String>,
}

impl Site {
    /// `listen` is the address the HTTP server actually bound (the port may have been 0).
    pub fn new(config: &Config, listen: SocketAddr) -> Site {
        let public_url = config.server.public_url.trim_end_matches('/');
        let public_host = config.media.rtmp.public_host.trim();
        Site {
            public_url: (!public_url.is_empty()).then(|| public_url.to_owned()),
            listen,
            rtmp_listen: config.media.rtmp_listen(),
            rtmp_public_host: (!public_host.is_empty()).then(|| public_host.to_owned()),
        }
    }

    /// Which rule is in force, for `/healthz` and `check-config`.
    pub fn mode(&self) -> &'static str {
        if self.public_url.is_some() {
            "public_url"
        } else {
            "per_request"
        }
    }

    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Whether cookies must be `Secure` (the site is served over https).
    pub fn is_https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    /// The `scheme://host[:port]` that links leaving the site (emails) start with. `request_host`
    /// is the `Host` header of the request that causes the mail.
    pub fn link_base(&self, request_host: Option<&str>) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        if let Some(authority) = request_host.and_then(Authority::parse) {
            if is_own_name(&authority.host) {
                let port = authority.port.unwrap_or(80);
                return http_url(&authority.host, port);
            }
        }
        let own = lan_addresses()
            .into_iter()
            .next()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        http_url(&host_literal(own), self.listen.port())
    }

    /// The host for RTMP push URLs when the configuration fixes one: `media.rtmp.public_host`,
    /// else the host of `public_url`.
    pub fn fixed_rtmp_host(&self) -> Option<String> {
        if let Some(host) = &self.rtmp_public_host {
            return Some(host.clone());
        }
        let url = self.public_url.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        Authority::parse(rest.split('/').next().unwrap_or(rest)).map(|a| a.host)
    }

    /// The host for RTMP push URLs: the configured one (see [`Site::fixed_rtmp_host`]), else the
    /// host name of `request_host` (the `Host` header of the request asking for the URL), else
    /// the machine's first LAN address.
    pub fn rtmp_host(&self, request_host: Option<&str>) -> String {
        if let Some(host) = self.fixed_rtmp_host() {
            return host;
        }
        if let Some(authority) = request_host.and_then(Authority::parse) {
            return authority.host;
        }
        lan_addresses()
            .into_iter()
            .next()
            .map_or_else(|| "localhost".to_owned(), host_literal)
    }

    /// The host by which this machine's own programs reach the RTMP listener (a browser push's
    /// ffmpeg): its address, or loopback when it listens on every interface.
    pub fn local_rtmp_host(&self) -> String {
        let ip = self.rtmp_listen.ip();
        match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_owned(),
            ip => host_literal(ip),
        }
    }

    /// `rtmp://HOST:PORT` for a publisher (see [`Site::rtmp_host`]).
    pub fn rtmp_base(&self, request_host: Option<&str>) -> String {
        format!(
            "rtmp://{}:{}",
            self.rtmp_host(request_host),
            self.rtmp_listen.port()
        )
    }

    /// Every address people can open, for the start-up log: the public URL if set, else one
    /// URL per address the listener answers on (each interface for an unspecified address).
    pub fn reachable_urls(&self) -> Vec<String> {
        if let Some(url) = &self.public_url {
            return vec![url.clone()];
        }
        answering_hosts(self.listen.ip())
            .into_iter()
            .map(|host| http_url(&host, self.listen.port()))
            .collect()
    }

    /// The RTMP servers OBS can be pointed at, for the start-up log.
    pub fn reachable_rtmp(&self) -> Vec<String> {
        if self.rtmp_public_host.is_some() || self.public_url.is_some() {
            return vec![format!("{}/live", self.rtmp_base(None))];
        }
        answering_hosts(self.rtmp_listen.ip())
            .into_iter()
            .map(|host| format!("rtmp://{host}:{}/live", self.rtmp_listen.port()))
            .collect()
    }
}

/// The host names a listener on `ip` answers to: `ip` itself, or for an unspecified address
/// `localhost` and every interface address (LAN addresses first).
fn answering_hosts(ip: IpAddr) -> Vec<String> {
    if !ip.is_unspecified() {
        return vec![host_literal(ip)];
    }
    let v6 = ip.is_ipv6();
    let mut hosts: Vec<String> = lan_addresses()
        .into_iter()
        .filter(|a| v6 || a.is_ipv4())
        .map(host_literal)
        .collect();
    hosts.push("localhost".to_owned());
    hosts
}

fn http_url(host: &str, port: u16) -> String {
    if port == 80 {
        format!("http://{host}")
    } else {
        format!("http://{host}:{port}")
    }
}

/// An address as it stands in a URL: IPv6 in brackets.
fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The host and port of a `Host` header (or a URL's authority).
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    /// As written in a URL: a name, an IPv4 address, or an IPv6 address in brackets.
    host: String,
    port: Option<u16>,
}

impl Authority {
    /// `None` for anything that is not a plain `host[:port]` (user info, paths, spaces…).
    fn parse(text: &str) -> Option<Authority> {
        let text = text.trim();
        let (host, port) = if text.starts_with('[') {
            let end = text.find(']')?;
            let host = &text[..=end];
            host[1..end].parse::<Ipv6Addr>().ok()?;
            match &text[end + 1..] {
                "" => (host, None),
                rest => (host, Some(rest.strip_prefix(':')?)),
            }
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None => None,
        };
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && (host.starts_with('[')
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        name_ok.then(|| Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// Whether `host` (as in a URL) names this machine: a loopback or interface address,
/// `localhost`, or the machine's host name (also with `.local` or `.lan`).
fn is_own_name(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return ip.is_loopback() || interface_addresses().contains(&ip);
    }
    let host = host.trim_end_matches('.');
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    machine_hostname().is_some_and(|name| {
        let name = name.to_ascii_lowercase();
        let short = name.split('.').next().unwrap_or(&name);
        host == name
            || host == short
            || host
                .strip_prefix(short)
                .is_some_and(|domain| domain == ".local" || domain == ".lan")
    })
}

/// This machine's host name.
pub fn machine_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The addresses of this machine's network interfaces that are up, loopback included.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let ifa = &*entry;
            let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
            if up && !ifa.ifa_addr.is_null() {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                        found.push(IpAddr::V4(ip));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            entry = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// The interface addresses other machines can reach: not loopback, not link-local IPv6;
/// IPv4 first.
pub fn lan_addresses() -> Vec<IpAddr> {
    let mut lan: Vec<IpAddr> = interface_addresses()
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
            }
        })
        .collect();
    lan.sort_by_key(|ip| ip.is_ipv6());
    lan.dedup();
    lan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(public_url: &str) -> Site {
        let mut config = Config::default();
        config.server.public_url = public_url.to_owned();
        Site::new(&config, SocketAddr::from(([0, 0, 0, 0], 8080)))
    }

    #[test]
    fn host_headers_are_parsed_strictly() {
        let a = |s| Authority::parse(s);
        assert_eq!(
            a("Studio.LAN:8080"),
            Some(Authority {
                host: "studio.lan".into(),
                port: Some(8080)
            })
        );
        assert_eq!(a("[::1]:80").map(|a| a.host), Some("[::1]".into()));
        assert_eq!(a("[::1]").map(|a| a.port), Some(None));
        for bad in [
            "",
            "evil.example/x",
            "a b",
            "user@host",
            "[::1",
            "[zz]:1",
            "host:99999",
            ":80",
        ] {
            assert_eq!(a(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_configured_public_url_wins_everywhere() {
        let s = site("https://live.example.org/");
        assert_eq!(s.mode(), "public_url");
        assert_eq!(
            s.link_base(Some("127.0.0.1:8080")),
            "https://live.example.org"
        );
        assert_eq!(s.rtmp_host(Some("10.0.0.1:8080")), "live.example.org");
        assert!(s.is_https());
    }

    #[test]
    fn email_links_take_only_this_machines_names() {
        let s = site("");
        assert_eq!(s.mode(), "per_request");
        assert_eq!(s.link_base(Some("127.0.0.2:9000")), "http://127.0.0.2:9000");
        assert_eq!(s.link_base(Some("localhost:9000")), "http://localhost:9000");
        assert_eq!(s.link_base(Some("[::1]:9000")), "http://[::1]:9000");
        for forged in [
            Some("evil.example"),
            Some("evil.example:8080"),
            Some("8.8.8.8"),
            None,
        ] {
            let base = s.link_base(forged);
            assert!(
                !base.contains("evil") && !base.contains("8.8.8.8"),
                "{base}"
            );
            assert!(base.ends_with(":8080"), "{base}");
        }
    }

    #[test]
    fn the_push_host_is_the_name_the_request_came_in_by() {
        let s = site("");
        assert_eq!(s.rtmp_host(Some("studio.lan:8080")), "studio.lan");
        assert_eq!(s.rtmp_base(Some("[::1]:8080")), "rtmp://[::1]:1935");
    }
}

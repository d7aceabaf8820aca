//! AMQP URLs: the list an `--amqp` value holds (a cluster's nodes), the
//! order they are tried in, and how they are shown (passwords hidden).

/// The default AMQP URL (the local broker, guest account, default vhost).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The URLs of an `--amqp` value: one, or several separated by commas (the
/// nodes of a cluster; a comma inside a password is written `%2C`).
pub fn amqp_urls(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// The order in which to try `n` URLs: all of them, from a random one on,
/// so a fleet of workers spreads over a cluster's nodes.
pub fn rotation(n: usize) -> impl Iterator<Item = usize> {
    use std::hash::{BuildHasher, Hasher};
    // A fresh random key per call: no random-number crate for one number.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let start = usize::try_from(random % (n.max(1) as u64)).unwrap_or(0);
    (0..n).map(move |i| (start + i) % n)
}

/// Hides the passwords of an AMQP URL or a comma-separated list of them,
/// for logs and errors.
pub fn redact_url(list: &str) -> String {
    amqp_urls(list)
        .into_iter()
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything up to the last `@` counts as user info: a password with a raw
/// `/`, `?` or `@` in it (an invalid URL, but one a user may write) stays
/// hidden, at the price of hiding too much of a URL with an `@` in its path.
fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL as written; whatever precedes an `@` may be a password.
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        };
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => {
            let user = userinfo.split([':', '/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{user}:***@{host_and_path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(super::redact_url("amqp://h/v"), "amqp://h/v");
        assert_eq!(super::redact_url("amqps://u:p@ss@h"), "amqps://u:***@h");
        assert_eq!(super::redact_url("amqp:u:pass@h"), "***@h");
        assert_eq!(
            super::redact_url("amqp://u:pa/ss?x@h:5672/%2f"),
            "amqp://u:***@h:5672/%2f"
        );
        assert_eq!(
            super::redact_url("amqp://a:x@h1:5681, amqp://b:y@h2:5682"),
            "amqp://a:***@h1:5681,amqp://b:***@h2:5682"
        );
    }

    #[test]
    fn a_list_of_urls_is_tried_whole_from_any_start() {
        assert_eq!(
            super::amqp_urls("amqp://h1, amqp://h2,,amqp://h3 "),
            ["amqp://h1", "amqp://h2", "amqp://h3"]
        );
        let mut starts = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let order: Vec<usize> = super::rotation(3).collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2], "every URL once: {order:?}");
            assert!(
                order.windows(2).all(|w| w[1] == (w[0] + 1) % 3),
                "in turn: {order:?}"
            );
            starts.insert(order[0]);
        }
        assert_eq!(starts.len(), 3, "starts spread over the URLs");
        assert_eq!(super::rotation(0).count(), 0);
    }
}

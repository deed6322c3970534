//! How records are named in Redis, and the SCAN patterns that find a scope's records.

use idemq_core::{RecordKey, Scope};

/// Which part of a record's Redis key is its cluster hash tag.
///
/// Redis Cluster places a key by the text between its first `{` and the next `}`. Scopes and
/// prefixes cannot hold braces, so the tag always opens where the store puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashTag {
    /// `prefix:{scope}:key`: a whole scope lives on one slot, so batch claims are one script
    /// call and `purge`/`stats` scan one node (default).
    #[default]
    Scope,
    /// `prefix:scope:{key}`: a scope spreads over every slot (and so every node); batch claims
    /// are split by slot and sent concurrently.
    Key,
}

/// Names records and scopes under one validated prefix.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) prefix: String,
    pub(crate) tag: HashTag,
}

impl Layout {
    /// The Redis key of a record. Both forms are unambiguous: the scope cannot hold `{` or `}`,
    /// so the first brace after the prefix marks where the scope ends.
    pub(crate) fn key(&self, k: &RecordKey) -> String {
        let mut out = Vec::with_capacity(
            self.prefix.len() + k.scope.as_str().len() + k.key.as_str().len() + 5,
        );
        self.write_key(k, &mut out);
        String::from_utf8(out).expect("keys are text")
    }

    /// Writes the Redis key of a record (see [`Layout::key`]) without building a `String`,
    /// e.g. straight into a command being built.
    pub(crate) fn write_key(&self, k: &RecordKey, out: &mut impl std::io::Write) {
        let (p, s, key) = (
            self.prefix.as_bytes(),
            k.scope.as_str().as_bytes(),
            k.key.as_str().as_bytes(),
        );
        let parts: [&[u8]; 6] = match self.tag {
            HashTag::Scope => [p, b":{", s, b"}:", key, b""],
            HashTag::Key => [p, b":", s, b":{", key, b"}"],
        };
        for part in parts {
            // Writing to memory cannot fail.
            let _ = out.write_all(part);
        }
    }

    /// The SCAN `MATCH` pattern of every record of `scope`, and nothing else.
    pub(crate) fn pattern(&self, scope: &Scope) -> String {
        let (p, s) = (glob_escape(&self.prefix), glob_escape(scope.as_str()));
        match self.tag {
            HashTag::Scope => format!("{p}:{{{s}}}:*"),
            HashTag::Key => format!("{p}:{s}:{{*"),
        }
    }

    /// A key on the slot that holds the whole scope, when the layout keeps a scope on one
    /// slot.
    pub(crate) fn scope_slot_key(&self, scope: &Scope) -> Option<String> {
        match self.tag {
            HashTag::Scope => Some(format!("{}:{{{}}}:", self.prefix, scope.as_str())),
            HashTag::Key => None,
        }
    }
}

/// Escapes the characters Redis glob patterns treat specially, so a name matches only
/// itself.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key when
/// it has none, modulo 16384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// True when `prefix` is a valid key prefix: `^[A-Za-z0-9_.:-]{1,64}$`.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use idemq_core::IdempotencyKey;

    fn rk(scope: &str, key: &str) -> RecordKey {
        RecordKey::new(
            Scope::new(scope).unwrap(),
            IdempotencyKey::new(key).unwrap(),
        )
    }

    /// A minimal Redis glob matcher (stringmatchlen without nocase), to check the patterns.
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, _) => s.is_empty(),
            (Some(b'*'), _) => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
            (Some(b'\\'), Some(c)) if p.len() > 1 => p[1] == *c && glob(&p[2..], &s[1..]),
            (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
            (Some(c), Some(d)) => c == d && glob(&p[1..], &s[1..]),
            (Some(_), None) => false,
        }
    }

    #[test]
    fn keys_put_the_tag_where_the_layout_says() {
        let scope = Layout {
            prefix: "idemq".into(),
            tag: HashTag::Scope,
        };
        let key = Layout {
            prefix: "idemq".into(),
            tag: HashTag::Key,
        };
        assert_eq!(scope.key(&rk("g/t", "k-1")), "idemq:{g/t}:k-1");
        assert_eq!(key.key(&rk("g/t", "k-1")), "idemq:g/t:{k-1}");
    }

    #[test]
    fn patterns_match_exactly_one_scope() {
        for tag in [HashTag::Scope, HashTag::Key] {
            let l = Layout {
                prefix: "app.v1:x-y".into(),
                tag,
            };
            let scope = Scope::new("a.b:c/@d-_").unwrap();
            let pat = l.pattern(&scope);
            for key in ["*", "?", "[a-z]", "\\", "{tag}", "}", "plain", "a:b"] {
                let name = l.key(&rk(scope.as_str(), key));
                assert!(glob(pat.as_bytes(), name.as_bytes()), "{pat} !~ {name}");
            }
            for other in ["a.b:c/@d-", "a.b:c/@d-_x", "a.b:c", "a.b:c/@d-_:x"] {
                let name = l.key(&rk(other, "k"));
                assert!(!glob(pat.as_bytes(), name.as_bytes()), "{pat} ~ {name}");
            }
        }
    }

    #[test]
    fn slots_agree_with_the_client() {
        use redis::cluster_routing::{Route, SlotAddr};
        for k in [
            "",
            "a",
            "123456789",
            "{user1000}.following",
            "foo{}{bar}",
            "foo{{bar}}zap",
            "a{b",
            "idemq:{s}:k",
        ] {
            assert_eq!(
                Route::new(slot_of(k.as_bytes()), SlotAddr::Master),
                Route::with_key(k, SlotAddr::Master),
                "{k:?}"
            );
        }
        assert_eq!(slot_of(b"123456789"), 0x31c3); // the CRC16 check value of XMODEM
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\-^"), "a\\*b\\?\\[c\\]\\\\\\-\\^");
    }

    #[test]
    fn prefixes_are_validated() {
        for ok in ["idemq", "a", "app.v1:x-y_z", &"p".repeat(64)] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in ["", "a b", "x{y}", "*", "a/b", &"p".repeat(65)] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}

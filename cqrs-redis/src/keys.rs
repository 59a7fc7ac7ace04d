//! The key layout: every key of one projection shares one hash tag, so one Lua script can touch
//! them all in a cluster.
//!
//! `<prefix>{p:<projection>}:checkpoint`, `...:token`, `...:ids` (a set of view ids), `...:dead`
//! (a list of dead letters) and `...:v:<view id>`. The projection name is percent-encoded inside the tag, so a name holding
//! `{`, `}` or `:` cannot end the tag early or collide with another projection's keys. View ids
//! come after the tag and are kept as they are (keys are binary safe).

/// The keys of one projection.
#[derive(Debug, Clone)]
pub(crate) struct ProjectionKeys {
    base: String,
}

fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl ProjectionKeys {
    pub(crate) fn new(prefix: &str, projection: &str) -> Self {
        ProjectionKeys { base: format!("{prefix}{{p:{}}}", encode(projection)) }
    }

    pub(crate) fn checkpoint(&self) -> String {
        format!("{}:checkpoint", self.base)
    }

    pub(crate) fn token(&self) -> String {
        format!("{}:token", self.base)
    }

    pub(crate) fn ids(&self) -> String {
        format!("{}:ids", self.base)
    }

    pub(crate) fn dead_letters(&self) -> String {
        format!("{}:dead", self.base)
    }

    pub(crate) fn view(&self, id: &str) -> String {
        format!("{}:v:{id}", self.base)
    }

    /// The prefix of view keys, for scripts that build them.
    pub(crate) fn view_prefix(&self) -> String {
        format!("{}:v:", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_their_hash_tag_and_apart() {
        let a = ProjectionKeys::new("cqrs:", "{tag}");
        assert_eq!(a.checkpoint(), "cqrs:{p:%7Btag%7D}:checkpoint");
        let b = ProjectionKeys::new("cqrs:", "a:b");
        let c = ProjectionKeys::new("cqrs:", "a%3Ab");
        assert_ne!(b.checkpoint(), c.checkpoint());
        assert_eq!(ProjectionKeys::new("x:", "tasks").view("t-1"), "x:{p:tasks}:v:t-1");
    }
}

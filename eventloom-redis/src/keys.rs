//! The key layout (described in the crate's documentation, section "Key layout"). Every key of
//! one projection shares one hash tag, `{p:<projection>}`, so one Lua script can touch them all in
//! a cluster. The projection name and index names are percent-encoded; view ids and index values
//! come last in their keys and are kept as they are.

use eventloom_core::store::IndexKey;

/// Percent-encodes every byte but ASCII letters, digits, `_`, `-` and `.`.
pub(crate) fn encode(name: &str) -> String {
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

/// The suffix of an index list's key (and its entry in `<gen>:indexes`): `<encoded name>=<value>`.
pub(crate) fn index_suffix(key: &IndexKey) -> String {
    format!("{}={}", encode(&key.name), key.value)
}

/// The registry of projection names: a set of the names (as given) of every projection the store
/// began a generation or recorded a stop for. Outside every projection's hash tag.
pub(crate) fn registry(prefix: &str) -> String {
    format!("{prefix}eventloom.projections")
}

/// The keys of one projection.
#[derive(Debug, Clone)]
pub(crate) struct ProjectionKeys {
    base: String,
}

impl ProjectionKeys {
    pub(crate) fn new(prefix: &str, projection: &str) -> Self {
        ProjectionKeys { base: format!("{prefix}{{p:{}}}", encode(projection)) }
    }

    pub(crate) fn live(&self) -> String {
        format!("{}:live", self.base)
    }

    pub(crate) fn building(&self) -> String {
        format!("{}:building", self.base)
    }

    pub(crate) fn last(&self) -> String {
        format!("{}:last", self.base)
    }

    pub(crate) fn token(&self) -> String {
        format!("{}:token", self.base)
    }

    pub(crate) fn trash(&self) -> String {
        format!("{}:trash", self.base)
    }

    /// Why the projection stopped (a hash: kind, position, reason), while it is stopped.
    pub(crate) fn stopped(&self) -> String {
        format!("{}:stopped", self.base)
    }

    pub(crate) fn generation(&self, id: u64) -> GenerationKeys {
        GenerationKeys { base: format!("{}:g{id}", self.base) }
    }

    /// The keys of the generation a pointer names, as stored (`""`, no generation, gives the
    /// keys of generation 0, which no generation has: a script that finds no pointer leaves them
    /// alone, but they are in the projection's slot like every key it is given).
    pub(crate) fn generation_named(&self, id: &str) -> GenerationKeys {
        let id = if id.is_empty() { "0" } else { id };
        GenerationKeys { base: format!("{}:g{id}", self.base) }
    }
}

/// The keys of one generation of a projection.
#[derive(Debug, Clone)]
pub(crate) struct GenerationKeys {
    base: String,
}

impl GenerationKeys {
    /// The metadata hash: version, checkpoint, token, and how many members `ids`, `indexes` and
    /// `dead` hold (see the crate's key layout).
    pub(crate) fn meta(&self) -> String {
        format!("{}:meta", self.base)
    }

    pub(crate) fn ids(&self) -> String {
        format!("{}:ids", self.base)
    }

    pub(crate) fn indexes(&self) -> String {
        format!("{}:indexes", self.base)
    }

    pub(crate) fn dead_letters(&self) -> String {
        format!("{}:dead", self.base)
    }

    /// The four keys a script reads to tell whether the generation is intact, in the order
    /// `common.lua` takes them: `meta`, `ids`, `indexes`, `dead`.
    pub(crate) fn quad(&self) -> [String; 4] {
        [self.meta(), self.ids(), self.indexes(), self.dead_letters()]
    }

    /// `:version` and `:checkpoint`: the metadata of the layout before `:meta`, which the sweep
    /// still deletes.
    pub(crate) fn legacy(&self) -> [String; 2] {
        [format!("{}:version", self.base), format!("{}:checkpoint", self.base)]
    }

    pub(crate) fn view(&self, id: &str) -> String {
        format!("{}:v:{id}", self.base)
    }

    pub(crate) fn index(&self, key: &IndexKey) -> String {
        self.index_at(&index_suffix(key))
    }

    /// The index list whose suffix (`<encoded name>=<value>`) is `suffix`.
    pub(crate) fn index_at(&self, suffix: &str) -> String {
        format!("{}:i:{suffix}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_their_hash_tag_and_apart() {
        let a = ProjectionKeys::new("cqrs:", "{tag}");
        assert_eq!(a.live(), "cqrs:{p:%7Btag%7D}:live");
        let b = ProjectionKeys::new("cqrs:", "a:b");
        let c = ProjectionKeys::new("cqrs:", "a%3Ab");
        assert_ne!(b.live(), c.live());
        let tasks = ProjectionKeys::new("x:", "tasks");
        assert_eq!(tasks.generation(3).view("t-1"), "x:{p:tasks}:g3:v:t-1");
        assert_eq!(tasks.generation(3).meta(), "x:{p:tasks}:g3:meta");
        assert_ne!(tasks.generation(1).view("2:v:a"), tasks.generation(12).view("a"));
        assert_eq!(tasks.generation_named("3").meta(), tasks.generation(3).meta());
        assert_eq!(tasks.generation_named("").quad()[0], "x:{p:tasks}:g0:meta");
    }

    #[test]
    fn index_names_are_encoded_and_values_kept() {
        let g = ProjectionKeys::new("x:", "tasks").generation(7);
        assert_eq!(g.index(&IndexKey::new("status", "open")), "x:{p:tasks}:g7:i:status=open");
        // A `=` in the name cannot move the boundary between name and value.
        assert_ne!(g.index(&IndexKey::new("a=b", "c")), g.index(&IndexKey::new("a", "b=c")));
        assert_eq!(g.index(&IndexKey::new("a=b", "c")), "x:{p:tasks}:g7:i:a%3Db=c");
    }
}

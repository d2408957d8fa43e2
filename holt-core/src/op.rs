//! Logical operations and guards: the vocabulary shared by the API, the
//! walker and the journal.

/// One logical mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
    Rename { src: Vec<u8>, dst: Vec<u8>, force: bool },
}

/// A precondition checked before any op of a batch is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Guard {
    Absent(Vec<u8>),
    Exists(Vec<u8>),
    PrefixEmpty(Vec<u8>),
    Version(Vec<u8>, u64),
}

impl Op {
    /// Keys whose landing frames this op may modify.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        let (a, b): (&[u8], Option<&[u8]>) = match self {
            Op::Put { key, .. } | Op::Delete { key } => (key, None),
            Op::Rename { src, dst, .. } => (src, Some(dst)),
        };
        std::iter::once(a).chain(b)
    }
}

impl Guard {
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            Guard::Absent(k) | Guard::Exists(k) | Guard::PrefixEmpty(k) | Guard::Version(k, _) => k,
        }
    }
}

/// A mutation as the journal records it: resolved, so replay never needs to
/// read the tree (a rename carries the value it moved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LogOp {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
    Rename { src: Vec<u8>, dst: Vec<u8>, value: Vec<u8> },
}

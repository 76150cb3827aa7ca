//! Read access to the nodes of a tree, whole (`Tree`) or still growing
//! (`Builder`): what the filesystem operations (`fs`) read and what a
//! growing tree (`grow`) hands them.

use crate::tree::{Builder, Node, Tree};

/// Read access to the nodes of a tree, whole or growing.
pub(crate) trait Nodes {
    fn node(&self, ino: u64) -> Option<&Node>;
    fn count(&self) -> usize;
}

impl Nodes for Tree {
    fn node(&self, ino: u64) -> Option<&Node> {
        Tree::node(self, ino)
    }
    fn count(&self) -> usize {
        self.len()
    }
}

impl Nodes for Builder {
    fn node(&self, ino: u64) -> Option<&Node> {
        self.get(ino)
    }
    fn count(&self) -> usize {
        self.len()
    }
}

//! Lineage: the graph of candidates, parent → child, each edge labelled with its mutation (SR.jl's
//! Recorder, as a petgraph graph). Saved beside the results as DOT, for Graphviz and for the report.

use petgraph::graph::{DiGraph, NodeIndex};

use super::journal::{CandidateRecord, Origin};

/// One edge: how a child came from a parent.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The mutation kind.
    pub kind: &'static str,
    /// What changed.
    pub detail: String,
    /// Whether this parent was a crossover's donor rather than the main parent.
    pub donor: bool,
}

/// The lineage of every candidate, node weights being candidate ids (node index = candidate id).
#[derive(Clone, Debug, Default)]
pub struct Lineage {
    /// The graph.
    pub graph: DiGraph<usize, Step>,
}

impl Lineage {
    /// Builds the graph from candidate records (ids 0..n, in order).
    pub fn from_candidates(candidates: &[CandidateRecord]) -> Lineage {
        let mut graph = DiGraph::new();
        for c in candidates {
            let node = graph.add_node(c.id);
            debug_assert_eq!(node.index(), c.id, "candidate ids are dense and in birth order");
        }
        for c in candidates {
            if let Origin::Mutation {
                parent,
                donor,
                kind,
                detail,
            } = &c.origin
            {
                let step = |is_donor| Step {
                    kind: kind.name(),
                    detail: detail.clone(),
                    donor: is_donor,
                };
                // `journal::read` checks parents are born first; a record that names an unknown one
                // (built by hand) loses that edge rather than panicking.
                let known = |id: usize| id < candidates.len() && c.id < candidates.len();
                if known(*parent) {
                    graph.add_edge(NodeIndex::new(*parent), NodeIndex::new(c.id), step(false));
                }
                if let Some(d) = donor.filter(|d| known(*d)) {
                    graph.add_edge(NodeIndex::new(d), NodeIndex::new(c.id), step(true));
                }
            }
        }
        Lineage { graph }
    }

    /// The chain of main parents from a seed rule to `id`, with the step into each: `[(seed, None),
    /// (child, Some(step)), …, (id, Some(step))]`.
    pub fn ancestry(&self, id: usize) -> Vec<(usize, Option<Step>)> {
        let mut chain = Vec::new();
        let mut node = NodeIndex::new(id);
        loop {
            let parent = self
                .graph
                .edges_directed(node, petgraph::Direction::Incoming)
                .find(|e| !e.weight().donor);
            match parent {
                Some(edge) => {
                    use petgraph::visit::EdgeRef;
                    chain.push((self.graph[node], Some(edge.weight().clone())));
                    node = edge.source();
                }
                None => {
                    chain.push((self.graph[node], None));
                    break;
                }
            }
        }
        chain.reverse();
        chain
    }

    /// Graphviz DOT: one node per candidate labelled with its id and score, one edge per parent.
    /// `label(id)` gives each node's text.
    pub fn to_dot(&self, label: impl Fn(usize) -> String) -> String {
        use petgraph::visit::EdgeRef;
        let mut out = String::from(
            "digraph lineage {\n    rankdir=LR;\n    node [shape=box, fontname=\"monospace\"];\n",
        );
        for node in self.graph.node_indices() {
            let id = self.graph[node];
            out.push_str(&format!("    c{id} [label=\"{}\"];\n", escape(&label(id))));
        }
        for edge in self.graph.edge_references() {
            let step = edge.weight();
            let style = if step.donor { ", style=dashed" } else { "" };
            out.push_str(&format!(
                "    c{} -> c{} [label=\"{}: {}\"{style}];\n",
                self.graph[edge.source()],
                self.graph[edge.target()],
                step.kind,
                escape(&step.detail)
            ));
        }
        out.push_str("}\n");
        out
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::mutate::Kind;

    fn record(id: usize, origin: Origin) -> CandidateRecord {
        CandidateRecord {
            id,
            hash: String::new(),
            source: String::new(),
            complexity: 1,
            origin,
            island: 0,
            round: 0,
            same_as: None,
        }
    }

    #[test]
    fn ancestry_follows_main_parents_back_to_a_seed() {
        let mutation = |parent, donor| Origin::Mutation {
            parent,
            donor,
            kind: Kind::InsertTerm,
            detail: "+ w".into(),
        };
        let lineage = Lineage::from_candidates(&[
            record(
                0,
                Origin::Seed {
                    path: "a.rhai".into(),
                },
            ),
            record(
                1,
                Origin::Seed {
                    path: "b.rhai".into(),
                },
            ),
            record(2, mutation(0, None)),
            record(3, mutation(2, Some(1))),
        ]);
        let chain: Vec<usize> = lineage.ancestry(3).iter().map(|(id, _)| *id).collect();
        assert_eq!(chain, vec![0, 2, 3]);
        let dot = lineage.to_dot(|id| format!("#{id}"));
        assert!(
            dot.contains("c1 -> c3 [label=\"insert_term: + w\", style=dashed]"),
            "{dot}"
        );
        assert!(dot.contains("c0 -> c2"));
    }
}

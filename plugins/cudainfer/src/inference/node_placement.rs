//! Which execution provider ONNX Runtime placed each node of a model on,
//! read from the "Node placements" report it logs at session creation when
//! the session's log level is verbose (session_state.cc,
//! VerifyEachNodeIsAssignedToAnEp), and the warning trtinfer posts when a
//! GPU session leaves nodes to the CPU.
//!
//! Why the log: ONNX Runtime's C API has no query of node placement. The
//! `session.disable_cpu_ep_fallback` option only makes session creation
//! fail (a second session, and no word of which nodes), and profiling needs
//! runs. The report is a verbose message of every full build since 1.17;
//! if a build or version does not log it, no warning is posted.

use std::collections::BTreeMap;

/// The provider ONNX Runtime names the CPU.
pub const CPU_PROVIDER: &str = "CPUExecutionProvider";

/// Operators ONNX Runtime places on the CPU on purpose even when a GPU
/// provider has a kernel for them, where they compute shapes (small int64
/// tensors; "ORT explicitly assigns shape related ops to CPU to improve
/// perf"). Those alone cost nothing worth a warning.
const SHAPE_OPERATORS: &[&str] = &[
    "Cast",
    "Concat",
    "ConstantOfShape",
    "Div",
    "Equal",
    "Expand",
    "Gather",
    "Mul",
    "Range",
    "Reshape",
    "Shape",
    "Size",
    "Slice",
    "Squeeze",
    "Sub",
    "Unsqueeze",
    "Where",
];

/// The nodes placed on one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderNodes {
    /// As reported (the report says it when every node is on one provider,
    /// without listing them).
    pub count: usize,
    /// Operator type of each listed node.
    pub operators: Vec<String>,
}

/// The nodes of a session by provider (ONNX Runtime's names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePlacements {
    pub providers: BTreeMap<String, ProviderNodes>,
}

impl NodePlacements {
    pub fn total(&self) -> usize {
        self.providers.values().map(|p| p.count).sum()
    }
}

/// Reads the placement report out of a session's log messages, fed in
/// order; everything else logged is ignored.
#[derive(Debug, Default)]
pub struct PlacementReader {
    placements: Option<NodePlacements>,
    /// The provider whose nodes are being listed.
    listing: Option<String>,
}

impl PlacementReader {
    /// One log message (several lines are read one by one, should a
    /// version log the report as one message).
    pub fn feed(&mut self, message: &str) {
        for line in message.lines() {
            self.line(line);
        }
    }

    fn line(&mut self, line: &str) {
        if line.trim() == "Node placements" {
            // A later report (a session made again) replaces an earlier one.
            self.placements = Some(NodePlacements::default());
            self.listing = None;
            return;
        }
        let Some(placements) = self.placements.as_mut() else {
            return;
        };
        let trimmed = line.trim();
        let placed = trimmed
            .strip_prefix("All nodes placed on [")
            .map(|rest| (rest, false))
            .or_else(|| {
                trimmed
                    .strip_prefix("Node(s) placed on [")
                    .map(|rest| (rest, true))
            });
        if let Some((rest, listed)) = placed {
            let Some((provider, count)) = rest.split_once(']') else {
                return;
            };
            let count = count
                .rsplit(':')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            placements.providers.insert(
                provider.to_string(),
                ProviderNodes {
                    count,
                    operators: Vec::new(),
                },
            );
            self.listing = listed.then(|| provider.to_string());
            return;
        }
        // A listed node: "  OpType (name)".
        if let Some(provider) = &self.listing {
            match trimmed.split_once(" (") {
                Some((op, _)) if line.starts_with("  ") && !op.contains(' ') => {
                    if let Some(nodes) = placements.providers.get_mut(provider) {
                        nodes.operators.push(op.to_string());
                    }
                }
                _ => self.listing = None,
            }
        }
    }

    /// The report, if one was logged.
    pub fn placements(&self) -> Option<&NodePlacements> {
        self.placements.as_ref()
    }
}

/// The warning for a session on GPU provider `provider` (our name: cuda,
/// tensorrt) whose `placements` leave nodes to the CPU, other than the
/// shape computations ONNX Runtime keeps there on purpose.
pub fn cpu_fallback_warning(placements: &NodePlacements, provider: &str) -> Option<String> {
    let cpu = placements.providers.get(CPU_PROVIDER)?;
    if cpu.count == 0 || placements.providers.len() < 2 {
        // All on the CPU: not a GPU session (the provider was skipped).
        return None;
    }
    let mut by_operator: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &cpu.operators {
        *by_operator.entry(op).or_default() += 1;
    }
    if by_operator.keys().all(|op| SHAPE_OPERATORS.contains(op)) {
        return None;
    }
    let mut counted: Vec<(&str, usize)> = by_operator.into_iter().collect();
    // The most frequent first, then by name.
    counted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let operators: Vec<String> = counted
        .iter()
        .map(|(op, n)| format!("{op} \u{d7} {n}"))
        .collect();
    Some(format!(
        "ONNX Runtime runs {} of the model's {} nodes on the CPU, not on the {provider} provider ({}): \
         each frame then pays copies between GPU and host memory and the CPU's time for them. \
         The {provider} provider has no kernel for these operators: use a float32 (or float16) \
         export of the model, not a quantised one (ConvInteger, MatMulInteger...), or one made \
         of operators the provider supports",
        cpu.count,
        placements.total(),
        operators.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(messages: &[&str]) -> Option<NodePlacements> {
        let mut reader = PlacementReader::default();
        for m in messages {
            reader.feed(m);
        }
        reader.placements().cloned()
    }

    /// The report as ONNX Runtime 1.31 logs it (one message per line), for
    /// a quantised model under the CUDA provider.
    fn int8_report() -> Vec<String> {
        let mut messages = vec![
            "Some other verbose message".to_string(),
            "Node placements".to_string(),
            " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 3".to_string(),
            "  Sigmoid (/model.0/act/Sigmoid)".to_string(),
            "  Mul (/model.0/act/Mul)".to_string(),
            "  MemcpyToHost (Memcpy_token_1)".to_string(),
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 73".to_string(),
        ];
        for i in 0..70 {
            messages.push(format!("  ConvInteger (/model.{i}/conv/Conv_quant)"));
        }
        messages.push("  DynamicQuantizeLinear (input_QuantizeLinear)".into());
        messages.push("  Shape (/model.22/Shape)".into());
        messages.push("  Gather (/model.22/Gather)".into());
        messages.push("SaveMLValueNameIndexMapping".into());
        messages
    }

    #[test]
    fn reads_the_report_line_by_line() {
        let messages = int8_report();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        let p = read(&refs).expect("a report");
        assert_eq!(p.providers.len(), 2);
        assert_eq!(p.total(), 76);
        let cpu = &p.providers[CPU_PROVIDER];
        assert_eq!(cpu.count, 73);
        assert_eq!(cpu.operators.len(), 73);
        assert_eq!(cpu.operators[0], "ConvInteger");
        assert_eq!(cpu.operators[72], "Gather");
        assert_eq!(
            p.providers["CUDAExecutionProvider"].operators,
            ["Sigmoid", "Mul", "MemcpyToHost"]
        );
        // The same report as one multi-line message reads the same.
        assert_eq!(read(&[&messages.join("\n")]), Some(p));
    }

    #[test]
    fn all_nodes_on_one_provider() {
        let p = read(&[
            "Node placements",
            " All nodes placed on [CPUExecutionProvider]. Number of nodes: 493",
        ])
        .unwrap();
        assert_eq!(p.total(), 493);
        assert!(p.providers[CPU_PROVIDER].operators.is_empty());
        assert_eq!(cpu_fallback_warning(&p, "cuda"), None, "a CPU session");
        assert_eq!(read(&["Session successfully initialized."]), None);
    }

    #[test]
    fn warns_of_the_operators_left_to_the_cpu() {
        let messages = int8_report();
        let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
        let w = cpu_fallback_warning(&read(&refs).unwrap(), "cuda").expect("a warning");
        assert!(
            w.starts_with("ONNX Runtime runs 73 of the model's 76 nodes on the CPU, not on the cuda provider (ConvInteger \u{d7} 70, DynamicQuantizeLinear \u{d7} 1, Gather \u{d7} 1, Shape \u{d7} 1)"),
            "{w}"
        );
        assert!(w.contains("use a float32 (or float16) export"), "{w}");
    }

    #[test]
    fn shape_computations_on_the_cpu_are_not_worth_a_warning() {
        let p = read(&[
            "Node placements",
            " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 2",
            "  Conv (/conv)",
            "  Sigmoid (/sigmoid)",
            " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 3",
            "  Shape (/Shape)",
            "  Gather (/Gather)",
            "  Unsqueeze (/Unsqueeze)",
        ])
        .unwrap();
        assert_eq!(p.providers[CPU_PROVIDER].count, 3);
        assert_eq!(cpu_fallback_warning(&p, "tensorrt"), None);
        let none_on_cpu = read(&[
            "Node placements",
            " All nodes placed on [CUDAExecutionProvider]. Number of nodes: 250",
        ])
        .unwrap();
        assert_eq!(cpu_fallback_warning(&none_on_cpu, "cuda"), None);
    }
}

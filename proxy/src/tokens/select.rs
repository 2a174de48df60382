//! Which vocabulary counts a request (`TOKENIZER_ENCODING`): one fixed vocabulary, or
//! `auto`, where the vocabulary follows the request's `model` — GLM-4.x → `glm4`,
//! GLM-5.x → `glm5`, anything else → `cl100k_base` ([`encoding_for_model`], pure).
//!
//! [`Tokenizers`] holds one [`TokenCounter`] per vocabulary that can be used (one, or three
//! for `auto`); the handler picks the request's counter once the model is known, and every
//! count of that request (input estimate, `count_tokens`, output estimate) uses it.

use std::sync::Arc;

use super::{Encoding, LoadProblem, TokenCounter};

/// What `TOKENIZER_ENCODING` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every request is counted with this vocabulary.
    Fixed(Encoding),
    /// The vocabulary follows the request's model ([`encoding_for_model`]).
    ByModel,
}

impl Selection {
    /// The vocabularies this selection can use (what is loaded).
    pub fn encodings(self) -> Vec<Encoding> {
        match self {
            Selection::Fixed(e) => vec![e],
            Selection::ByModel => AUTO_ENCODINGS.to_vec(),
        }
    }

    /// The name used by `TOKENIZER_ENCODING` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Selection::Fixed(e) => e.name(),
            Selection::ByModel => "auto",
        }
    }
}

/// The vocabularies `auto` loads.
pub const AUTO_ENCODINGS: [Encoding; 3] = [Encoding::Glm4, Encoding::Glm5, Encoding::Cl100kBase];

/// The vocabulary of a model id under `auto`: `glm-4…` → `glm4`, `glm-5…` → `glm5`
/// (case-insensitive), anything else → `cl100k_base`.
pub fn encoding_for_model(model: &str) -> Encoding {
    let lower = model.trim().as_bytes();
    let starts = |prefix: &[u8]| {
        lower.len() >= prefix.len() && lower[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if starts(b"glm-5") {
        Encoding::Glm5
    } else if starts(b"glm-4") {
        Encoding::Glm4
    } else {
        Encoding::Cl100kBase
    }
}

/// The loaded counters and how a request picks one.
#[derive(Debug)]
pub struct Tokenizers {
    selection: Selection,
    /// One counter per encoding of `selection.encodings()`, in that order.
    counters: Vec<Arc<TokenCounter>>,
    /// `TOKENIZER_MODEL`: the model of requests that name none.
    default_model: String,
}

impl Tokenizers {
    /// Loads every vocabulary `selection` can use. The input-count cache budget
    /// (`cache_bytes`) is shared: each counter gets an equal part, so the total stays
    /// within `TOKEN_COUNT_CACHE_BYTES`.
    pub fn load(
        selection: Selection,
        max_bytes: usize,
        cache_bytes: usize,
        default_model: &str,
    ) -> Result<Self, LoadProblem> {
        let encodings = selection.encodings();
        let share = cache_bytes / encodings.len().max(1);
        let counters = encodings
            .into_iter()
            .map(|e| {
                Ok(Arc::new(
                    TokenCounter::load(e, max_bytes)?.with_cache_bytes(share),
                ))
            })
            .collect::<Result<Vec<_>, LoadProblem>>()?;
        Ok(Self {
            selection,
            counters,
            default_model: default_model.to_owned(),
        })
    }

    /// One counter used for every request.
    pub fn single(counter: TokenCounter) -> Self {
        Self {
            selection: Selection::Fixed(counter.encoding()),
            counters: vec![Arc::new(counter)],
            default_model: String::new(),
        }
    }

    /// The selection.
    pub fn selection(&self) -> Selection {
        self.selection
    }

    /// Every loaded counter.
    pub fn counters(&self) -> &[Arc<TokenCounter>] {
        &self.counters
    }

    /// The counter of a request naming `model` (`None`/empty: `TOKENIZER_MODEL`'s).
    pub fn for_model(&self, model: Option<&str>) -> &Arc<TokenCounter> {
        let first = &self.counters[0];
        match self.selection {
            Selection::Fixed(_) => first,
            Selection::ByModel => {
                let model = model
                    .filter(|m| !m.is_empty())
                    .unwrap_or(&self.default_model);
                let want = encoding_for_model(model);
                self.counters
                    .iter()
                    .find(|c| c.encoding() == want)
                    .unwrap_or(first)
            }
        }
    }

    /// Any counter (all share `TOKEN_COUNT_MAX_BYTES`), for what does not depend on the
    /// vocabulary.
    pub fn any(&self) -> &Arc<TokenCounter> {
        &self.counters[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_pick_their_vocabulary() {
        for (model, want) in [
            ("glm-4.7", Encoding::Glm4),
            ("glm-4.5-air", Encoding::Glm4),
            ("GLM-4.6", Encoding::Glm4),
            ("glm-4", Encoding::Glm4),
            ("glm-5", Encoding::Glm5),
            ("glm-5.1", Encoding::Glm5),
            ("glm-5-turbo", Encoding::Glm5),
            ("GLM-5.3", Encoding::Glm5),
            (" glm-5.2", Encoding::Glm5),
            ("glm-z1-air", Encoding::Cl100kBase),
            ("claude-sonnet-4", Encoding::Cl100kBase),
            ("glm", Encoding::Cl100kBase),
            ("", Encoding::Cl100kBase),
            ("glm-50", Encoding::Glm5),
        ] {
            assert_eq!(encoding_for_model(model), want, "{model:?}");
        }
        assert_eq!(Selection::ByModel.encodings(), AUTO_ENCODINGS.to_vec());
        assert_eq!(
            Selection::Fixed(Encoding::Glm5).encodings(),
            vec![Encoding::Glm5]
        );
    }
}

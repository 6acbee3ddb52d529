//! What a route matches on besides host and path, and how a split shares
//! requests between pools: compiled from `[[frontend.route]] header` and
//! `split`.

use crate::state::StateError;

/// A compiled route header condition.
#[derive(Debug)]
pub struct HeaderCondition {
    name: http::HeaderName,
    test: HeaderTest,
}

#[derive(Debug)]
enum HeaderTest {
    Present,
    Equals(String),
    Prefix(String),
}

impl HeaderCondition {
    pub(super) fn compile(spec: &crate::config::HeaderMatch) -> Option<HeaderCondition> {
        let name = http::HeaderName::from_bytes(spec.name.as_bytes()).ok()?;
        let test = match (&spec.value, &spec.prefix) {
            (Some(value), _) => HeaderTest::Equals(value.clone()),
            (None, Some(prefix)) => HeaderTest::Prefix(prefix.clone()),
            (None, None) => HeaderTest::Present,
        };
        Some(HeaderCondition { name, test })
    }

    /// Whether a request with `headers` meets it (any of the header's
    /// values may).
    pub(super) fn matches(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get_all(&self.name)
            .iter()
            .any(|value| match &self.test {
                HeaderTest::Present => true,
                HeaderTest::Equals(want) => value.as_bytes() == want.as_bytes(),
                HeaderTest::Prefix(want) => value.as_bytes().starts_with(want.as_bytes()),
            })
    }
}

/// Pools sharing requests by weight: each arm's pool and the running sum
/// of the weights up to it.
#[derive(Debug)]
pub struct Split {
    arms: Vec<(usize, u32)>,
    total: u32,
}

impl Split {
    pub(super) fn compile(
        field: &str,
        arms: &[crate::config::SplitArm],
        pool_index: &dyn Fn(String, &str) -> Result<usize, StateError>,
    ) -> Result<Option<Split>, StateError> {
        if arms.is_empty() {
            return Ok(None);
        }
        let mut total = 0;
        let mut compiled = Vec::with_capacity(arms.len());
        for arm in arms {
            total += arm.weight;
            compiled.push((pool_index(field.to_string(), &arm.pool)?, total));
        }
        Ok(Some(Split {
            arms: compiled,
            total,
        }))
    }

    /// One pool, each with its share of the chances.
    pub fn choose(&self) -> usize {
        let draw = fastrand::u32(0..self.total.max(1));
        self.arms
            .iter()
            .find(|(_, upto)| draw < *upto)
            .or(self.arms.last())
            .map_or(0, |(pool, _)| *pool)
    }
}

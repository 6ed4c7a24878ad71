//! [`RuleSet`]: a set of rule ids as one word, for the per-container plan every admission makes.

use super::RuleId;

/// A set of [`RuleId`]s, iterated in rule order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleSet(u32);

impl RuleSet {
    /// Whether `rule` is in the set.
    pub fn contains(&self, rule: RuleId) -> bool {
        self.0 & bit(rule) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Add `rule`.
    pub fn insert(&mut self, rule: RuleId) {
        self.0 |= bit(rule);
    }

    /// The rules, in rule order.
    pub fn iter(&self) -> impl Iterator<Item = RuleId> + '_ {
        RuleId::ALL.into_iter().filter(|rule| self.contains(*rule))
    }
}

fn bit(rule: RuleId) -> u32 {
    1 << (rule as u32)
}

impl Extend<RuleId> for RuleSet {
    fn extend<I: IntoIterator<Item = RuleId>>(&mut self, rules: I) {
        rules.into_iter().for_each(|rule| self.insert(rule));
    }
}

impl FromIterator<RuleId> for RuleSet {
    fn from_iter<I: IntoIterator<Item = RuleId>>(rules: I) -> Self {
        let mut set = Self::default();
        set.extend(rules);
        set
    }
}

impl IntoIterator for RuleSet {
    type Item = RuleId;
    type IntoIter = std::vec::IntoIter<RuleId>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter().collect::<Vec<_>>().into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_each_rule_apart_and_iterates_in_rule_order() {
        assert!(RuleId::ALL.len() <= 32, "a u32 holds every rule");
        let set: RuleSet = [RuleId::ImageSize, RuleId::ImageExists, RuleId::ImageSize]
            .into_iter()
            .collect();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [RuleId::ImageExists, RuleId::ImageSize]
        );
        for rule in RuleId::ALL {
            let one: RuleSet = [rule].into_iter().collect();
            let others: Vec<_> = RuleId::ALL
                .into_iter()
                .filter(|r| one.contains(*r))
                .collect();
            assert_eq!(others, [rule]);
        }
        assert!(RuleSet::default().is_empty());
    }
}

//! `control_groups` (in `[appliance]`): what the members of a group may do over the control
//! socket, with the API tokens' scopes. The socket's file mode lets its group in; which of
//! those people may approve or send is this table's to say, not the file mode's.

use super::{TokenScope, Validator};

impl Validator<'_> {
    pub(super) fn control_groups(
        &mut self,
        ra: &super::raw::RawAppliance,
    ) -> Vec<(String, TokenScope)> {
        let mut out = Vec::new();
        for (group, scope) in ra.control_groups.iter().flatten() {
            let name = group.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                self.at(
                    scope,
                    format!("control_groups: \"{group}\" is not a group name"),
                );
                continue;
            }
            let scope = self.choice(
                "control_groups",
                Some(scope),
                TokenScope::Read,
                &TokenScope::WORDS,
            );
            out.push((name.to_string(), scope));
        }
        out
    }
}

"""The permissions manifest: every action kind is in it, a configuration needs what it enables, and
docs/permissions.md is its rendering."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from activities.permissions import ACTIONS, Grant, graph, render_markdown, required
from config.settings import ApprovalSettings, Settings
from workflows.types import ActionKind

ROOT = Path(__file__).parents[2]


def test_every_action_kind_has_its_needs():
    assert set(ACTIONS) == set(get_args(ActionKind))


def test_docs_permissions_md_is_the_manifest_rendered():
    assert (ROOT / "docs" / "permissions.md").read_text() == render_markdown(), (
        "docs/permissions.md differs from activities/permissions.py: "
        "run `quell doctor --render-permissions > docs/permissions.md`"
    )


def test_an_action_never_run_or_a_dry_run_needs_no_write_grant():
    enforce = required(Settings())
    assert graph("User.RevokeSessions.All") in enforce
    assert Grant("directory_role", "Privileged Authentication Administrator") in enforce
    never = Settings(approval=ApprovalSettings(by_action={"revoke_sessions": "never", "reset_admin_password": "never"}))
    assert graph("User.RevokeSessions.All") not in required(never)
    assert Grant("directory_role", "Privileged Authentication Administrator") not in required(never)
    dry = required(Settings(mode="dry_run"))
    assert graph("User.RevokeSessions.All") not in dry and graph("Policy.ReadWrite.ConditionalAccess") not in dry
    assert dry[graph("User.Read.All")] == ["evidence audit_log", "evidence directory_accounts", "evidence admin_sign_ins",
                                            "action reset_admin_password (dry run)",
                                            "action revoke_sessions (dry run)"]
    # Evidence is read whatever the actions.
    assert Grant("exchange", "Exchange.ManageAsApp") in dry

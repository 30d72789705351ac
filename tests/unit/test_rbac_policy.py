"""Bootstrap RBAC policy, reconciliation, escalation checks and access reviews, checked against Kubernetes 1.32."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesat import errors
from kubesat.auth.authz import ALLOW, DENY, NO_OPINION, Attributes
from kubesat.auth.bootstrap_policy import (
    AUTOUPDATE,
    cluster_role_bindings,
    cluster_roles,
    needs_recreate,
    reconcile_binding,
    reconcile_cluster_role,
)
from kubesat.auth.escalation import (
    breakdown,
    check_binding_write,
    check_role_write,
    compact_string,
    covers,
    escalation_forbidden,
    holds_full_authority,
)
from kubesat.auth.rbac import RBACAuthorizer, RBACIndex, Rule
from kubesat.auth.reviews import (
    MASTERS_RULES,
    attributes_from_sar_spec,
    rules_review_status,
    sar_status,
    user_from_sar_spec,
    validate_sar,
)
from kubesat.auth.user import UserInfo

ALICE = UserInfo("alice", groups=("devs", "system:authenticated"))
ADMIN = UserInfo("root", groups=("system:masters", "system:authenticated"))

ROLES = {r["metadata"]["name"]: r for r in cluster_roles()}
BINDINGS = {b["metadata"]["name"]: b for b in cluster_role_bindings()}


def rules(*api: dict) -> list[Rule]:
    return [Rule.from_api(r) for r in api]


def tuples(role: dict) -> list[tuple]:
    """A role's rules as (apiGroups, resources, resourceNames, nonResourceURLs, verbs) tuples, for comparison."""
    return [(tuple(r.get("apiGroups", ())), tuple(r.get("resources", ())), tuple(r.get("resourceNames", ())),
             tuple(r.get("nonResourceURLs", ())), tuple(r["verbs"])) for r in role["rules"] or []]


W = ("create", "delete", "deletecollection", "patch", "update")
R = ("get", "list", "watch")
RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


# ------------------------------------------------------------------------ bootstrap objects
def test_names_labels_annotations():
    assert set(ROLES) == {
        "cluster-admin", "admin", "edit", "view", "system:aggregate-to-admin", "system:aggregate-to-edit",
        "system:aggregate-to-view", "system:basic-user", "system:discovery", "system:public-info-viewer",
        "system:service-account-issuer-discovery", "system:auth-delegator", "system:node",
        "system:node-bootstrapper", "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        "system:certificates.k8s.io:kube-apiserver-client-approver",
        "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
        "system:certificates.k8s.io:kubelet-serving-approver", "system:certificates.k8s.io:legacy-unknown-approver"}
    for obj in [*ROLES.values(), *BINDINGS.values()]:
        assert obj["apiVersion"] == "rbac.authorization.k8s.io/v1"
        assert obj["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert obj["metadata"]["annotations"] == {AUTOUPDATE: "true"}
    assert ROLES["edit"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert ROLES["view"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    for name, label in (("admin", "admin"), ("edit", "edit"), ("view", "view")):
        assert ROLES[name]["rules"] is None
        assert ROLES[name]["aggregationRule"] == {
            "clusterRoleSelectors": [{"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{label}": "true"}}]}
        assert ROLES[f"system:aggregate-to-{label}"]["metadata"]["labels"][
            f"rbac.authorization.k8s.io/aggregate-to-{label}"] == "true"


def test_bindings():
    def groups(name):
        b = BINDINGS[name]
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        assert all(s["kind"] == "Group" and s["apiGroup"] == "rbac.authorization.k8s.io" for s in b["subjects"])
        return [s["name"] for s in b["subjects"]]

    assert groups("cluster-admin") == ["system:masters"]
    assert groups("system:basic-user") == ["system:authenticated"]
    assert groups("system:discovery") == ["system:authenticated"]
    assert groups("system:public-info-viewer") == ["system:authenticated", "system:unauthenticated"]
    assert groups("system:service-account-issuer-discovery") == ["system:serviceaccounts"]


def test_small_roles_match_testdata():
    assert tuples(ROLES["cluster-admin"]) == [(("*",), ("*",), (), (), ("*",)), ((), (), (), ("*",), ("*",))]
    assert tuples(ROLES["system:basic-user"]) == [
        (("authorization.k8s.io",), ("selfsubjectaccessreviews", "selfsubjectrulesreviews"), (), (), ("create",)),
        (("authentication.k8s.io",), ("selfsubjectreviews",), (), (), ("create",))]
    assert tuples(ROLES["system:discovery"]) == [((), (), (), (
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
        "/version", "/version/"), ("get",))]
    assert tuples(ROLES["system:public-info-viewer"]) == [
        ((), (), (), ("/healthz", "/livez", "/readyz", "/version", "/version/"), ("get",))]
    assert tuples(ROLES["system:service-account-issuer-discovery"]) == [
        ((), (), (), ("/.well-known/openid-configuration", "/openid/v1/jwks"), ("get",))]
    assert tuples(ROLES["system:auth-delegator"]) == [
        (("authentication.k8s.io",), ("tokenreviews",), (), (), ("create",)),
        (("authorization.k8s.io",), ("subjectaccessreviews",), (), (), ("create",))]
    assert tuples(ROLES["system:aggregate-to-admin"]) == [
        (("authorization.k8s.io",), ("localsubjectaccessreviews",), (), (), ("create",)),
        (("rbac.authorization.k8s.io",), ("rolebindings", "roles"), (), (), RW)]


def test_aggregate_to_edit_matches_testdata():
    assert tuples(ROLES["system:aggregate-to-edit"]) == [
        (("",), ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"), (), (), R),
        (("",), ("serviceaccounts",), (), (), ("impersonate",)),
        (("",), ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"), (), (), W),
        (("",), ("pods/eviction",), (), (), ("create",)),
        (("",), ("configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                 "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"),
         (), (), W),
        (("",), ("serviceaccounts/token",), (), (), ("create",)),
        (("apps",), ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                     "replicasets/scale", "statefulsets", "statefulsets/scale"), (), (), W),
        (("autoscaling",), ("horizontalpodautoscalers",), (), (), W),
        (("batch",), ("cronjobs", "jobs"), (), (), W),
        (("extensions",), ("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                           "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"),
         (), (), W),
        (("policy",), ("poddisruptionbudgets",), (), (), W),
        (("networking.k8s.io",), ("ingresses", "networkpolicies"), (), (), W),
        (("coordination.k8s.io",), ("leases",), (), (), RW),
    ]


def test_aggregate_to_view_matches_testdata():
    assert tuples(ROLES["system:aggregate-to-view"]) == [
        (("",), ("configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                 "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                 "services/status"), (), (), R),
        (("",), ("bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                 "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"), (), (), R),
        (("",), ("namespaces",), (), (), R),
        (("discovery.k8s.io",), ("endpointslices",), (), (), R),
        (("apps",), ("controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                     "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
                     "statefulsets/scale", "statefulsets/status"), (), (), R),
        (("autoscaling",), ("horizontalpodautoscalers", "horizontalpodautoscalers/status"), (), (), R),
        (("batch",), ("cronjobs", "cronjobs/status", "jobs", "jobs/status"), (), (), R),
        (("extensions",), ("daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                           "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                           "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"), (), (), R),
        (("policy",), ("poddisruptionbudgets", "poddisruptionbudgets/status"), (), (), R),
        (("networking.k8s.io",), ("ingresses", "ingresses/status", "networkpolicies"), (), (), R),
    ]


def _bootstrapped_index() -> RBACIndex:
    idx = RBACIndex()
    for r in cluster_roles():
        idx.put_cluster_role(r)
    for b in cluster_role_bindings():
        idx.put_binding(b)
    return idx


def _res(verb, resource, group="", sub="", name="", ns="default", user=ALICE) -> Attributes:
    return Attributes(user, verb, True, ns, group, "v1", resource, sub, name, "")


def test_view_reads_but_not_secrets_and_edit_mints_tokens():
    idx = _bootstrapped_index()
    view, edit = idx.cluster_role_rules("view"), idx.cluster_role_rules("edit")
    assert any(r.allows(_res("get", "pods")) for r in view)
    assert not any(r.allows(_res("get", "secrets")) for r in view)
    assert not any(r.allows(_res("create", "serviceaccounts", sub="token")) for r in view)
    assert any(r.allows(_res("get", "secrets")) for r in edit)
    assert any(r.allows(_res("create", "serviceaccounts", sub="token")) for r in edit)
    # rights on serviceaccounts alone do not cover the token subresource
    assert not covers(rules({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["*"]}),
                      [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}])[0]


def _aggregated_like_the_controller() -> dict[str, list[Rule]]:
    """Each role's rules after Kubernetes' aggregation controller settles (aggregated roles feed each other)."""
    stored = {n: [Rule.from_api(r) for r in role["rules"] or []] for n, role in ROLES.items()}
    changed = True
    while changed:
        changed = False
        for name, role in ROLES.items():
            if not role.get("aggregationRule"):
                continue
            want = role["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
            got: list[Rule] = []
            for other, obj in sorted(ROLES.items()):
                labels = obj["metadata"]["labels"]
                if other != name and all(labels.get(k) == v for k, v in want.items()):
                    got += [r for r in stored[other] if r not in got]
            if got != stored[name]:
                stored[name], changed = got, True
    return stored


def test_aggregation_admin_edit_view_nest():
    agg = _aggregated_like_the_controller()
    view, edit, admin = agg["view"], agg["edit"], agg["admin"]
    assert view and covers(edit, [r.raw for r in view])[0]
    assert covers(admin, [r.raw for r in edit])[0]
    assert not covers(view, [r.raw for r in edit])[0]
    assert not covers(edit, [r.raw for r in admin])[0]


@pytest.mark.parametrize("outer,inner", [("edit", "view"), ("admin", "edit")])
def test_rbac_index_aggregation_nests(outer, inner):
    idx = _bootstrapped_index()
    big, small = idx.cluster_role_rules(outer), idx.cluster_role_rules(inner)
    assert small and covers(list(big), [r.raw for r in small])[0]


def test_rbac_index_aggregates_direct_selections():
    idx = _bootstrapped_index()
    view, edit, admin = (idx.cluster_role_rules(n) for n in ("view", "edit", "admin"))
    assert any(r.allows(_res("get", "pods")) for r in view)
    assert any(r.allows(_res("delete", "pods")) for r in edit)
    assert any(r.allows(_res("create", "rolebindings", group="rbac.authorization.k8s.io")) for r in admin)


def test_bootstrap_authorizes_discovery_and_basic_user():
    authz = RBACAuthorizer(_bootstrapped_index())
    anon = UserInfo("system:anonymous", groups=("system:unauthenticated",))
    assert authz.authorize(Attributes(anon, "get", False, path="/version"))[0] == ALLOW
    assert authz.authorize(Attributes(anon, "get", False, path="/api"))[0] == NO_OPINION
    assert authz.authorize(Attributes(ALICE, "get", False, path="/apis/apps"))[0] == ALLOW
    assert authz.authorize(_res("create", "selfsubjectaccessreviews", group="authorization.k8s.io", ns=""))[0] == ALLOW
    sa = UserInfo("system:serviceaccount:ns:x", groups=("system:serviceaccounts", "system:authenticated"))
    assert authz.authorize(Attributes(sa, "get", False, path="/openid/v1/jwks"))[0] == ALLOW
    assert authz.authorize(Attributes(ALICE, "get", False, path="/openid/v1/jwks"))[0] == NO_OPINION


# ------------------------------------------------------------------------ reconciliation
def test_reconcile_missing_creates_desired():
    desired = ROLES["system:basic-user"]
    assert reconcile_cluster_role(None, desired) == desired
    assert reconcile_binding(None, BINDINGS["cluster-admin"]) == BINDINGS["cluster-admin"]


def test_reconcile_unchanged_is_noop():
    for role in ROLES.values():
        stored = copy.deepcopy(role)
        stored["metadata"]["resourceVersion"] = "7"
        assert reconcile_cluster_role(stored, role) is None
    for b in BINDINGS.values():
        assert reconcile_binding(copy.deepcopy(b), b) is None


def test_reconcile_keeps_user_rules_and_adds_missing():
    desired = ROLES["system:basic-user"]
    stored = copy.deepcopy(desired)
    stored["metadata"]["labels"] = {"team": "x"}
    stored["metadata"]["annotations"] = {"note": "mine"}
    stored["rules"] = [
        {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},  # user-added
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"]},
    ]
    out = reconcile_cluster_role(stored, desired)
    assert out is not None
    assert out["rules"][:2] == stored["rules"]
    assert out["rules"][2:] == [
        {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectrulesreviews"]},
        {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]},
    ]
    assert out["metadata"]["labels"] == {"team": "x", "kubernetes.io/bootstrapping": "rbac-defaults"}
    assert out["metadata"]["annotations"] == {"note": "mine", AUTOUPDATE: "true"}
    assert reconcile_cluster_role(out, desired) is None


def test_reconcile_existing_label_values_win():
    stored = copy.deepcopy(ROLES["view"])
    stored["metadata"]["annotations"][AUTOUPDATE] = "true"
    stored["metadata"]["labels"]["kubernetes.io/bootstrapping"] = "custom"
    assert reconcile_cluster_role(stored, ROLES["view"]) is None


def test_reconcile_autoupdate_false_untouched():
    stored = copy.deepcopy(ROLES["edit"])
    stored["metadata"]["annotations"][AUTOUPDATE] = "false"
    stored["aggregationRule"] = {"clusterRoleSelectors": []}
    stored["rules"] = []
    assert reconcile_cluster_role(stored, ROLES["edit"]) is None
    b = copy.deepcopy(BINDINGS["system:discovery"])
    b["metadata"]["annotations"][AUTOUPDATE] = "false"
    b["subjects"] = []
    assert reconcile_binding(b, BINDINGS["system:discovery"]) is None
    b["roleRef"]["name"] = "other"
    assert not needs_recreate(b, BINDINGS["system:discovery"])


def test_reconcile_aggregated_role_selectors():
    stored = copy.deepcopy(ROLES["admin"])
    extra = {"matchLabels": {"example.com/aggregate-to-admin": "true"}}
    stored["aggregationRule"]["clusterRoleSelectors"] = [extra]
    stored["rules"] = [{"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}]
    out = reconcile_cluster_role(stored, ROLES["admin"])
    assert out["aggregationRule"]["clusterRoleSelectors"] == [
        extra, {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]
    assert out["rules"] == stored["rules"]
    # an aggregationRule on a role that should not aggregate is removed
    plain = copy.deepcopy(ROLES["system:basic-user"])
    plain["aggregationRule"] = {"clusterRoleSelectors": [extra]}
    assert "aggregationRule" not in reconcile_cluster_role(plain, ROLES["system:basic-user"])


def test_reconcile_binding_adds_subjects_and_recreates_on_roleref_change():
    desired = BINDINGS["system:public-info-viewer"]
    stored = copy.deepcopy(desired)
    user_subject = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}
    stored["subjects"] = [user_subject, desired["subjects"][1]]
    out = reconcile_binding(stored, desired)
    assert out["subjects"] == [user_subject, desired["subjects"][1], desired["subjects"][0]]
    moved = copy.deepcopy(desired)
    moved["roleRef"]["name"] = "view"
    assert needs_recreate(moved, desired)
    assert reconcile_binding(moved, desired) == desired


# ------------------------------------------------------------------------ escalation
CREATE_ROLES_GET_PODS = rules(
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
)


def test_cannot_grant_delete_pods_with_get_only():
    want = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]
    missing = check_role_write(ALICE, CREATE_ROLES_GET_PODS, want, can_escalate=False)
    assert missing == [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]
    assert check_role_write(ALICE, CREATE_ROLES_GET_PODS, want[:0] + [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], False) == []
    assert check_role_write(ALICE, CREATE_ROLES_GET_PODS, want, can_escalate=True) == []
    assert check_role_write(ADMIN, [], want, can_escalate=False) == []
    # Any update but a GC-only one is checked against all its rules, even when they are unchanged
    # (kube-apiserver's policybased role storage: only IsOnlyMutatingGCFields is exempt).
    assert check_role_write(ALICE, [], want, can_escalate=False) == want
    assert check_role_write(ALICE, CREATE_ROLES_GET_PODS, want, False) == [
        {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]
    assert check_role_write(ALICE, [], want, can_escalate=False, only_gc_fields=True) == []


def test_exact_message():
    missing = check_role_write(ALICE, CREATE_ROLES_GET_PODS,
                               [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete", "get"]},
                                {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}], False)
    err = escalation_forbidden("roles", "r1", ALICE, missing)
    assert isinstance(err, errors.StatusError) and err.code == 403 and err.reason == "Forbidden"
    assert err.message == (
        'roles.rbac.authorization.k8s.io "r1" is forbidden: user "alice" (groups=["devs" "system:authenticated"]) '
        "is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}\n'
        '{APIGroups:["apps"], Resources:["deployments"], Verbs:["delete" "get"]}')
    assert err.details == {"name": "r1", "group": "rbac.authorization.k8s.io", "kind": "roles"}
    err = escalation_forbidden("clusterrolebindings", "b", UserInfo("u"),
                               [{"verbs": ["get"], "nonResourceURLs": ["/metrics"]},
                                {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"],
                                 "resourceNames": ["s1"]}], ["boom"])
    assert err.message == (
        'clusterrolebindings.rbac.authorization.k8s.io "b" is forbidden: user "u" (groups=[]) is attempting to grant '
        "RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["secrets"], ResourceNames:["s1"], Verbs:["get"]}\n'
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}; resolution errors: [boom]')


OWNER = rules(
    {"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]},
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a", "b"], "verbs": ["get"]},
    {"nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"]},
)


@pytest.mark.parametrize("requested,ok,missing", [
    ([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}], True, []),
    ([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch"]}], False,
     ['{APIGroups:[""], Resources:["pods"], Verbs:["watch"]}']),
    # owner `*/status` covers any status subresource; `pods` does not cover pods/log
    ([{"apiGroups": [""], "resources": ["deployments/status"], "verbs": ["list"]}], True, []),
    ([{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}], False,
     ['{APIGroups:[""], Resources:["pods/log"], Verbs:["get"]}']),
    # owner wildcards cover anything in apps
    ([{"apiGroups": ["apps"], "resources": ["deployments", "x/y"], "verbs": ["delete", "escalate"]}], True, []),
    ([{"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}], True, []),
    # request wildcards need owner wildcards
    ([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}], False,
     ['{APIGroups:[""], Resources:["*"], Verbs:["get"]}']),
    ([{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}], False,
     ['{APIGroups:["*"], Resources:["pods"], Verbs:["get"]}']),
    ([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}], False,
     ['{APIGroups:[""], Resources:["pods"], Verbs:["*"]}']),
    # resourceNames: named owner covers only those names; an unnamed request needs an unnamed owner rule
    ([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]}], True, []),
    ([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a", "c"], "verbs": ["get"]}], False,
     ['{APIGroups:[""], Resources:["configmaps"], ResourceNames:["c"], Verbs:["get"]}']),
    ([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}], False,
     ['{APIGroups:[""], Resources:["configmaps"], Verbs:["get"]}']),
    ([{"apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"], "verbs": ["get"]}], True, []),
    # URLs: exact or prefix*; a request for `*` needs an owner `*`
    ([{"nonResourceURLs": ["/healthz", "/logs/a/b", "/logs/"], "verbs": ["get"]}], True, []),
    ([{"nonResourceURLs": ["/logs"], "verbs": ["get"]}], False, ['{NonResourceURLs:["/logs"], Verbs:["get"]}']),
    ([{"nonResourceURLs": ["*"], "verbs": ["get"]}], False, ['{NonResourceURLs:["*"], Verbs:["get"]}']),
    ([{"nonResourceURLs": ["/healthz"], "verbs": ["post"]}], False, ['{NonResourceURLs:["/healthz"], Verbs:["post"]}']),
    ([], True, []),
])
def test_covers_table(requested, ok, missing):
    got_ok, got = covers(OWNER, requested)
    assert got_ok is ok
    assert [compact_string(r) for r in got] == missing


def test_covers_compacts_verbs_per_group_resource():
    ok, missing = covers([], [{"apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get", "list"]}])
    assert not ok
    assert missing == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
                       {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["pods"]}]
    assert len(breakdown({"apiGroups": ["", "apps"], "resources": ["pods"], "verbs": ["get", "list"]})) == 4
    assert covers(MASTERS_RULES, [r for role in ROLES.values() for r in role["rules"] or []])[0]
    assert holds_full_authority(MASTERS_RULES) and not holds_full_authority(OWNER)


def test_check_binding_write():
    role = rules({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]})
    assert check_binding_write(ALICE, CREATE_ROLES_GET_PODS, role, can_bind=False) == [
        {"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]
    assert check_binding_write(ALICE, CREATE_ROLES_GET_PODS, role, can_bind=True) == []
    assert check_binding_write(ADMIN, [], role, can_bind=False) == []
    assert check_binding_write(ALICE, role, role, can_bind=False) == []
    assert check_binding_write(ALICE, [], None, False, role_ref={"kind": "ClusterRole", "name": "nope"}) == (
        'clusterroles.rbac.authorization.k8s.io "nope" not found')
    assert check_binding_write(ALICE, [], None, False, role_ref={"kind": "Role", "name": "r"}) == (
        'roles.rbac.authorization.k8s.io "r" not found')


# ------------------------------------------------------------------------ reviews
def _invalid_message(kind, obj, ns=""):
    with pytest.raises(errors.StatusError) as ei:
        validate_sar(kind, obj, ns)
    assert ei.value.code == 422 and ei.value.reason == "Invalid"
    return ei.value.message


def test_sar_validation_messages():
    assert _invalid_message("SubjectAccessReview", {"spec": {"resourceAttributes": {"verb": "get"}}}) == (
        '.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": '
        "at least one of user or group must be specified")
    assert _invalid_message("SubjectAccessReview", {"spec": {"user": "bob"}}) == (
        '.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": '
        "exactly one of nonResourceAttributes or resourceAttributes must be specified")
    msg = _invalid_message("SelfSubjectAccessReview", {"spec": {
        "resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/x", "verb": "get"}}})
    assert msg == ('.authorization.k8s.io "" is invalid: spec.nonResourceAttributes: Invalid value: '
                   'authorization.NonResourceAttributes{Path:"/x", Verb:"get"}: '
                   "cannot be specified in combination with resourceAttributes")
    assert _invalid_message("SubjectAccessReview", {"spec": {}}) == (
        '.authorization.k8s.io "" is invalid: [spec.resourceAttributes: Invalid value: "null": exactly one of '
        'nonResourceAttributes or resourceAttributes must be specified, spec.user: Invalid value: "": '
        "at least one of user or group must be specified]")
    msg = _invalid_message("SelfSubjectAccessReview", {"metadata": {"name": "x"},
                                                       "spec": {"resourceAttributes": {"verb": "get"}}})
    assert msg.startswith('.authorization.k8s.io "" is invalid: metadata: Invalid value: v1.ObjectMeta{Name:"x", ')
    assert msg.endswith(": must be empty")
    # a self review needs no user; groups alone suffice for a SubjectAccessReview
    validate_sar("SelfSubjectAccessReview", {"metadata": {"creationTimestamp": None},
                                             "spec": {"nonResourceAttributes": {"path": "/", "verb": "get"}}})
    validate_sar("SubjectAccessReview", {"spec": {"groups": ["g"], "resourceAttributes": {"verb": "get"}}})
    validate_sar("SelfSubjectRulesReview", {"spec": {"namespace": "default"}})


def test_local_sar_validation():
    ok = {"metadata": {"namespace": "ns1"}, "spec": {"user": "bob", "resourceAttributes": {"namespace": "ns1"}}}
    validate_sar("LocalSubjectAccessReview", ok, "ns1")
    # metadata.namespace is filled from the URL before validation
    validate_sar("LocalSubjectAccessReview", {"spec": ok["spec"]}, "ns1")
    assert _invalid_message("LocalSubjectAccessReview", {"spec": {
        "user": "bob", "resourceAttributes": {"namespace": "other"}}}, "ns1") == (
        '.authorization.k8s.io "" is invalid: spec.resourceAttributes.namespace: Invalid value: "other": '
        "must match metadata.namespace")
    assert _invalid_message("LocalSubjectAccessReview", {"spec": {
        "user": "bob", "nonResourceAttributes": {"path": "/x", "verb": "get"}}}, "ns1") == (
        '.authorization.k8s.io "" is invalid: spec.nonResourceAttributes: Invalid value: '
        'authorization.NonResourceAttributes{Path:"/x", Verb:"get"}: disallowed on this kind of request')
    with pytest.raises(errors.StatusError) as ei:
        validate_sar("LocalSubjectAccessReview", {"metadata": {"namespace": "a"}, "spec": ok["spec"]}, "ns1")
    assert ei.value.code == 400
    assert ei.value.message == "the namespace of the provided object does not match the namespace sent on the request"


def test_attributes_and_status():
    spec = {"user": "bob", "groups": ["g"], "uid": "1", "extra": {"k": ["v"]},
            "resourceAttributes": {"namespace": "ns", "verb": "create", "group": "", "resource": "serviceaccounts",
                                   "subresource": "token", "name": "default"}}
    user = user_from_sar_spec(spec)
    assert user == UserInfo("bob", "1", ("g",), {"k": ("v",)})
    a = attributes_from_sar_spec(spec, user)
    assert a == Attributes(user, "create", True, "ns", "", "*", "serviceaccounts", "token", "default", "")
    a = attributes_from_sar_spec({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}, user)
    assert a == Attributes(user, "get", False, path="/healthz")
    assert sar_status(ALLOW, "RBAC: ok") == {"allowed": True, "reason": "RBAC: ok"}
    assert sar_status(NO_OPINION, "") == {"allowed": False}
    assert sar_status(DENY, "no") == {"allowed": False, "denied": True, "reason": "no"}


def test_rules_review_status_shape():
    idx = _bootstrapped_index()
    status = rules_review_status(idx.rules_for(ALICE, "default"))
    assert status["incomplete"] is False
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in status["resourceRules"]
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]} in (
        status["nonResourceRules"])
    assert rules_review_status([]) == {"resourceRules": [], "nonResourceRules": [], "incomplete": False}
    named = rules_review_status(rules({"apiGroups": [""], "resources": ["cm"], "resourceNames": ["a"],
                                       "verbs": ["get"]}))
    assert named["resourceRules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["cm"],
                                       "resourceNames": ["a"]}]


# ------------------------------------------------------------------------ property
VERBS = ["get", "list", "create", "delete", "*"]
GROUPS = ["", "apps", "*"]
RESOURCES = ["pods", "pods/log", "secrets", "*/status", "pods/status", "*"]
NAMES = ["a", "b"]
URLS = ["/healthz", "/api", "/api/*", "*"]
NAMESPACES = ["", "ns1", "ns2"]
SUBJECTS = [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
            {"kind": "Group", "name": "others"},
            {"kind": "ServiceAccount", "name": "alice", "namespace": "ns1"}]

resource_rule = st.fixed_dictionaries(
    {"verbs": st.lists(st.sampled_from(VERBS), min_size=1, max_size=2, unique=True),
     "apiGroups": st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2, unique=True),
     "resources": st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=2, unique=True)},
    optional={"resourceNames": st.lists(st.sampled_from(NAMES), min_size=1, max_size=2, unique=True)})
url_rule = st.fixed_dictionaries(
    {"verbs": st.lists(st.sampled_from(VERBS), min_size=1, max_size=2, unique=True),
     "nonResourceURLs": st.lists(st.sampled_from(URLS), min_size=1, max_size=2, unique=True)})
binding = st.tuples(st.sampled_from(NAMESPACES), st.lists(st.one_of(resource_rule, url_rule), max_size=3),
                    st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=2))
attributes = st.one_of(
    st.builds(lambda v, g, r, n, ns: (v, True, g, r, n, ns, ""), st.sampled_from(VERBS[:4]),
              st.sampled_from(GROUPS[:2]), st.sampled_from(["pods", "pods/log", "pods/status", "secrets"]),
              st.sampled_from(["", "a", "c"]), st.sampled_from(NAMESPACES)),
    st.builds(lambda v, p: (v, False, "", "", "", "", p), st.sampled_from(VERBS[:4]),
              st.sampled_from(["/healthz", "/api", "/api/v1", "/apis", "/"])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(binding, max_size=4), attributes)
def test_rules_review_agrees_with_authorizer(bindings, attr):
    idx = RBACIndex()
    for i, (ns, role_rules, subjects) in enumerate(bindings):
        name = f"r{i}"
        if ns:
            role_rules = [r for r in role_rules if "nonResourceURLs" not in r]
            idx.put_role({"metadata": {"name": name, "namespace": ns}, "rules": role_rules})
            ref = {"kind": "Role", "name": name}
        else:
            idx.put_cluster_role({"metadata": {"name": name}, "rules": role_rules})
            ref = {"kind": "ClusterRole", "name": name}
        idx.put_binding({"metadata": {"name": f"b{i}", "namespace": ns} if ns else {"name": f"b{i}"},
                         "roleRef": ref, "subjects": subjects})
    user = UserInfo("system:serviceaccount:ns1:alice", groups=("devs", "system:authenticated"))
    verb, is_res, group, resource, name, ns, path = attr
    res, _, sub = resource.partition("/")
    a = Attributes(user, verb, is_res, ns, group, "v1", res, sub, name, path)
    decision = RBACAuthorizer(idx).authorize(a)[0]
    status = rules_review_status(idx.rules_for(user, ns))
    reviewed = [Rule.from_api(r) for r in status["resourceRules"] + status["nonResourceRules"]]
    assert (decision == ALLOW) == any(r.allows(a) for r in reviewed)

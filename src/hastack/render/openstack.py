"""The OpenStack side of HA, as oslo.config fragments in /etc/<project>/<project>.conf.d/.

oslo.config reads that directory by default, so these fragments add HA
settings without owning each project's main config file:
- oslo.messaging lists every rabbit node (clients fail over themselves) and
  declares quorum queues;
- oslo.db goes through the VIP (haproxy: one galera writer) and retries forever;
- memcached through the VIP (one shared cache) or listed directly;
- neutron L3 HA (VRRP routers) with automatic failover of legacy routers,
  which replaces the guide's router-rescheduling script.
"""

from __future__ import annotations

import configparser
import io

from hastack.credentials.model import Secrets, db_password_key, service_password_key
from hastack.render import tls as tls_files
from hastack.render.files import RenderedFile, text
from hastack.render.galera import db_user
from hastack.render.openstack_run import CREDENTIAL_DIR, FERNET_DIR, auth_url, ca_file, vip_url
from hastack.render.rabbitmq import amqp_port
from hastack.spec.catalog import BY_NAME, ENDPOINTS, RUN, databases
from hastack.spec.model import Node, QueueType, Role, Spec

# Projects whose agents run on compute or network nodes, and so need messaging there.
AGENT_PROJECTS = {Role.COMPUTE: ("nova", "neutron"), Role.NETWORK: ("neutron",)}
NO_CONFIG = frozenset({"horizon", "memcached", "nova-spice", "nova-ec2", "ceilometer"})
# Projects whose HTTP APIs haproxy fronts (horizon has its own settings).
API_PROJECTS = frozenset(e.service for e in ENDPOINTS if e.http and e.tls and e.removed is None) - {"horizon"}


def fragment_path(project: str) -> str:
    return f"/etc/{project}/{project}.conf.d/50-hastack-ha.conf"


def transport_url(spec: Spec, secrets: Secrets) -> str:
    r = spec.rabbitmq
    pw = secrets["rabbitmq_password"]
    hosts = ",".join(f"{r.user}:{pw}@{n.address}:{amqp_port(spec)}" for n in spec.rabbit_nodes())
    vhost = r.vhost if r.vhost.startswith("/") else "/" + r.vhost
    return f"rabbit://{hosts}{vhost}"


def _memcache_servers(spec: Spec) -> str:
    if spec.memcached.via_haproxy:
        return f"{spec.vips[0].address}:11211"
    return ",".join(f"{n.address}:11211" for n in spec.memcached_nodes())


def _ini(sections: dict[str, dict[str, str]]) -> str:
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keep option case
    for name, values in sections.items():
        cp[name] = values
    buf = io.StringIO()
    buf.write("# Rendered by hastack: HA settings; the project's own config stays yours.\n")
    cp.write(buf)
    return buf.getvalue()


def fragment(spec: Spec, secrets: Secrets, project: str, node: Node) -> str:
    controller = node.has(Role.CONTROLLER)
    sections: dict[str, dict[str, str]] = {"DEFAULT": {}}
    if spec.rabbitmq.enabled:
        sections["DEFAULT"]["transport_url"] = transport_url(spec, secrets)
        quorum = spec.rabbitmq.queue_type is QueueType.QUORUM
        sections["oslo_messaging_rabbit"] = {
            "rabbit_quorum_queue": str(quorum).lower(),
            "rabbit_ha_queues": str(spec.rabbitmq.queue_type is QueueType.MIRRORED).lower(),
            "amqp_durable_queues": str(quorum).lower(),
            "heartbeat_timeout_threshold": str(spec.timing.rabbit_heartbeat_s),
        }
        if spec.tls.enabled:
            # AMQP over TLS, the broker's certificate checked against the cluster's CA.
            sections["oslo_messaging_rabbit"] |= {"ssl": "true", "ssl_ca_file": tls_files.CA_PATH}
    dbs = databases(project)
    if controller and spec.galera.enabled and dbs:
        vip = spec.vips[0].address
        pw = secrets[db_password_key(project)]
        user = db_user(project)
        # With TLS, over TLS to the writer (through haproxy's TCP pass-through: the node's certificate
        # names the VIP), checked against the CA: PyMySQL requires and verifies it once given a CA.
        tls = f"?ssl_ca={ca}" if (ca := ca_file(spec)) is not None else ""
        # placement reads its own section (oslo.db's options under another name).
        sections["placement_database" if project == "placement" else "database"] = {
            "connection": f"mysql+pymysql://{user}:{pw}@{vip}/{dbs[0]}{tls}",
            # Ride out a galera writer failover instead of failing requests: retry for ever, every
            # second (oslo.db waits 10 s between tries by default, longer than the failover itself).
            "max_retries": "-1",
            "retry_interval": "1",
            "connection_recycle_time": "280",
        }
        if project == "nova":
            sections["api_database"] = {
                "connection": f"mysql+pymysql://{user}:{pw}@{vip}/{dbs[1]}{tls}",
                "max_retries": "-1",
                "retry_interval": "1",
            }
    if controller:
        servers = _memcache_servers(spec)
        # A memcached that stops answering (its node died, haproxy moved to the next) is skipped for
        # `dead_retry` seconds: 300 by default, five minutes with no cache after a one-second blip.
        sections["cache"] = {
            "enabled": "true",
            "backend": "oslo_cache.memcache_pool",
            "memcache_servers": servers,
            "memcache_dead_retry": "10",
            "memcache_socket_timeout": "1.0",
            "memcache_pool_connection_get_timeout": "2",
        }
        if project != "keystone":
            sections["keystone_authtoken"] = {"memcached_servers": servers, "memcache_pool_dead_retry": "10",
                                              "memcache_pool_socket_timeout": "1"}
    if controller and project in RUN:
        _run_settings(spec, secrets, project, node, sections)
        if spec.tls.enabled and project in API_PROJECTS:
            # haproxy ends TLS on the VIP and tells the API so (X-Forwarded-Proto): the links it returns
            # (version documents, next pages) must say https, or clients follow them to plain HTTP.
            sections["oslo_middleware"] = {"enable_proxy_headers_parsing": "true"}
    if project == "nova":
        _nova_settings(spec, secrets, node, sections)
    if project == "cinder" and controller:
        sections["DEFAULT"] |= {"my_ip": str(node.address), "auth_strategy": "keystone",
                                **_cafile(spec, "glance_ca_certificates_file")}
    if project == "heat" and controller:
        _heat_settings(spec, secrets, sections)
    if project == "neutron" and controller:
        _neutron_settings(spec, secrets, sections)
        n = spec.openstack.neutron
        network_nodes = len(spec.with_role(Role.NETWORK))
        sections["DEFAULT"].update({
            "l3_ha": str(n.l3_ha).lower(),
            "max_l3_agents_per_router": str(n.max_l3_agents_per_router or network_nodes),
            "allow_automatic_l3agent_failover": str(n.allow_automatic_l3agent_failover).lower(),
            "allow_automatic_dhcp_failover": "true",
            "dhcp_agents_per_network": str(n.dhcp_agents_per_network or min(network_nodes, 2) or 1),
        })
    return _ini(sections)


def _run_settings(spec: Spec, secrets: Secrets, project: str, node: Node, sections: dict[str, dict[str, str]]
                  ) -> None:
    """What a project hastack runs needs beyond HA: keystone's tokens, the others' service user."""
    if project == "keystone":
        sections["token"] = {"provider": "fernet"}
        # Three keys: staged, primary and one secondary for tokens issued before a rotation.
        sections["fernet_tokens"] = {"key_repository": f"{FERNET_DIR}/", "max_active_keys": "3"}
        sections["credential"] = {"key_repository": f"{CREDENTIAL_DIR}/"}
        sections["identity"] = {"password_hash_algorithm": "bcrypt",
                                "password_hash_rounds": str(spec.openstack.password_hash_rounds)}
        return
    sections["keystone_authtoken"] |= {
        "www_authenticate_uri": auth_url(spec), "auth_url": auth_url(spec), "auth_type": "password",
        "project_domain_name": "Default", "user_domain_name": "Default", "project_name": "service",
        "username": project, "password": secrets[service_password_key(project)],
        "region_name": spec.openstack.region, **_cafile(spec),
    }
    if project == "placement":
        sections["api"] = {"auth_strategy": "keystone"}
    if project == "glance":
        # Its own server: bound to this node (haproxy holds the port on the VIP).
        sections["DEFAULT"] |= {"bind_host": str(node.address), "bind_port": str(BY_NAME["glance-api"].port),
                                "workers": str(spec.openstack.api_workers)}
        sections["paste_deploy"] = {"flavor": "keystone"}
        sections["glance_store"] = {"stores": "file,http", "default_store": "file",
                                    "filesystem_store_datadir": spec.openstack.glance.path.rstrip("/") + "/"}


def _cafile(spec: Spec, key: str = "cafile") -> dict[str, str]:
    """keystoneauth's (or heat's) option naming the CA that the VIP's certificate is checked against."""
    return {key: ca} if (ca := ca_file(spec)) is not None else {}


def _service_auth(spec: Spec, secrets: Secrets, user: str) -> dict[str, str]:
    """keystoneauth settings for one service calling another as `user` (a service user, admin in `service`)."""
    return {"auth_type": "password", "auth_url": f"{auth_url(spec)}/v3", "project_name": "service",
            "project_domain_name": "Default", "user_domain_name": "Default", "username": user,
            "password": secrets[service_password_key(user)], "region_name": spec.openstack.region,
            **_cafile(spec)}


def _neutron_settings(spec: Spec, secrets: Secrets, sections: dict[str, dict[str, str]]) -> None:
    """neutron-server with ML2: the API and its RPC workers; agents (none in the lab) bind ports."""
    sections["DEFAULT"] |= {"core_plugin": "ml2", "service_plugins": "router", "auth_strategy": "keystone",
                            "rpc_workers": str(spec.openstack.api_workers), "rpc_state_report_workers": "1"}
    sections["ml2"] = {"type_drivers": "flat,vlan,vxlan", "tenant_network_types": "vxlan",
                       "mechanism_drivers": "openvswitch", "extension_drivers": "port_security"}
    sections["ml2_type_vxlan"] = {"vni_ranges": "1:1000"}
    sections["ml2_type_flat"] = {"flat_networks": "provider"}
    # Port events reach nova as neutron's own service user.
    if "nova" in spec.openstack.services:
        sections["nova"] = _service_auth(spec, secrets, "neutron")


def _heat_settings(spec: Spec, secrets: Secrets, sections: dict[str, dict[str, str]]) -> None:
    """heat's API and engine: instances reach the CFN API on the VIP; the engine acts for users by trusts
    delegated to heat's own user."""
    cfn = vip_url(spec, "heat-api-cfn")
    sections["DEFAULT"] |= {"heat_metadata_server_url": cfn, "heat_waitcondition_server_url": f"{cfn}/v1/waitcondition",
                            "num_engine_workers": str(spec.openstack.api_workers)}
    sections["trustee"] = {k: v for k, v in _service_auth(spec, secrets, "heat").items()
                           if k in ("auth_type", "auth_url", "username", "password", "user_domain_name")}
    sections["clients_keystone"] = {"auth_uri": auth_url(spec), **_cafile(spec, "ca_file")}
    sections["ec2authtoken"] = {"auth_uri": f"{auth_url(spec)}/v3", **_cafile(spec, "ca_file")}
    if spec.tls.enabled:
        sections["clients"] = _cafile(spec, "ca_file")  # the engine's clients of every other API


def _nova_settings(spec: Spec, secrets: Secrets, node: Node, sections: dict[str, dict[str, str]]) -> None:
    """nova on a controller (API, metadata, conductor, scheduler, console proxy) or a compute (fake driver)."""
    sections["DEFAULT"] |= {"my_ip": str(node.address), "host": node.name}
    # nova's own user reaches placement and neutron (Debian's default names no user for placement
    # and neutron's admin on localhost).
    sections["placement"] = _service_auth(spec, secrets, "nova") | {"valid_interfaces": "internal"}
    if "neutron" in spec.openstack.services:
        sections["neutron"] = _service_auth(spec, secrets, "nova") | {"valid_interfaces": "internal",
                                                                      "service_metadata_proxy": "false"}
    if spec.tls.enabled:
        # The APIs nova finds in keystone's catalog (images, volumes, identity): checked against the CA.
        sections |= {name: _cafile(spec) for name in ("glance", "cinder", "keystone")}
    # Debian's nova.conf turns spice on; hastack's consoles are noVNC, proxied on the controllers.
    sections["spice"] = {"enabled": "false"}
    if node.has(Role.CONTROLLER):
        workers = str(spec.openstack.api_workers)
        sections["api"] = {"auth_strategy": "keystone"}
        sections["conductor"] = {"workers": workers}
        sections["scheduler"] = {"workers": workers}
        sections["vnc"] = {"enabled": "true", "novncproxy_host": str(node.address),
                           "novncproxy_port": str(BY_NAME["nova-novncproxy"].port),
                           "novncproxy_base_url": f"{vip_url(spec, 'nova-novncproxy')}/vnc_auto.html"}
    if node.has(Role.COMPUTE):
        # Real nova-compute, no hypervisor: instances exist in nova's databases and placement only.
        sections["DEFAULT"]["compute_driver"] = "fake.FakeDriver"
        if not node.has(Role.CONTROLLER):
            sections["vnc"] = {"enabled": "false"}  # no console to serve


def render_openstack(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    out: dict[str, list[RenderedFile]] = {}
    services = [s for s in spec.openstack.services if s not in NO_CONFIG]
    for node in spec.nodes:
        controller = node.has(Role.CONTROLLER)
        projects: list[str] = list(services) if controller else []
        for role, agents in AGENT_PROJECTS.items():
            if node.has(role):
                projects += [p for p in agents if p in services and p not in projects]
        if not projects:
            continue
        out[node.name] = [
            text(fragment_path(p), fragment(spec, secrets, p, node), 0o640, group=p)
            for p in projects
        ]
        if (ca := tls_files.authority(spec, secrets)) is not None:
            out[node.name].append(RenderedFile(tls_files.CA_PATH, ca.cert))
    return out

# Example pillar for hecate: the seed pillar's keys, unchanged in meaning, plus the optional
# extensions (marked NEW). Validate it without a master: hecate-validate pillar/hecate.sls
#
# Secrets: write vault:<mount>/<path>[#key] or consul:<key>; the hecate ext_pillar resolves them on
# the master (docs/secrets.md). The seed's own Jinja call, salt['vault.read_secret'], works too.
hecate:
  global:
    domain: cybermonkey.dev
    environment: production
    hetzner_location: nbg1

  reverse_proxy:
    caddy:
      version: "2.11"
      ports:
        http: 80
        https: 443
        admin: 2019
      admin: unix//run/hecate/caddy/admin.sock        # NEW: default 127.0.0.1:<ports.admin>; never 0.0.0.0
      tls:                                     # NEW: acme | internal | off
        mode: acme
        email: ops@cybermonkey.dev
      stream_close_delay: 5m                   # NEW: WebSockets survive a reload for this long
      profiles:                                # NEW: "common" (the seed's security + headers) and "none" are built in
        internal-tools:
          block_paths: [/.env, /.git/*]
          headers:
            X-Frame-Options: DENY
      routes:
        - domain: hera.cybermonkey.dev
          backend: "hecate-server-1:9000"
          service: authentik
        - domain: cloud.cybermonkey.dev
          backend: "100.65.138.128:11000"
          service: nextcloud
        - domain: observe.cybermonkey.dev
          backend: "100.65.138.128:8069"
          service: grafana
          health: {uri: /api/health, interval: 10s}   # NEW: active health checks
        - domain: jenkins.cybermonkey.dev
          backend: "100.65.138.128:8059"
          service: jenkins
          profile: internal-tools
        - domain: s3.cybermonkey.dev
          backend: "100.65.138.128:8123"
          service: minio-console
        - domain: s3api.cybermonkey.dev
          backend: "100.65.138.128:9123"
          service: minio-api
        - domain: delphi.cybermonkey.dev
          backend: "https://100.88.163.85"
          service: wazuh
          tls_skip_verify: true
        - domain: cybermonkey.dev
          backends: ["100.65.138.128:8009", "100.65.138.129:8009"]   # NEW: several upstreams
          lb_policy: least_conn
          service: helen

    nginx:
      version: "1.27"
      tcp_proxies:
        - {name: wazuh-agent-tcp, listen_port: 1515, backend: "100.88.163.85:1515"}
        - {name: wazuh-agent-udp, listen_port: 1514, backend: "100.88.163.85:1514", protocol: udp}
        - {name: wazuh-api, listen_port: 55000, backend: "100.88.163.85:55000"}
        - {name: jenkins-agent, listen_port: 50000, backend: "100.65.138.128:50000"}

    coturn:
      version: "4.6"
      realm: cybermonkey.dev
      static_auth_secret: "vault:secret/hecate/coturn#auth_secret"
      ports: {listening: 3478, tls_listening: 5349, relay_min: 49160, relay_max: 49200}

  authentik:
    version: "2025.6.1"
    database:
      name: authentik
      user: authentik
      password: "vault:secret/hecate/authentik#db_password"
    secret_key: "vault:secret/hecate/authentik#secret_key"
    ports: {http: 9000, https: 9443}

  resources:
    reverse_proxy: {cpu: 2000, memory: 2048, disk: 10240}
    authentik: {cpu: 1000, memory: 1024, disk: 20480}
    applications:
      helen: {cpu: 500, memory: 256, disk: 1024}

  deployment:
    strategy: rolling
    health_check_interval: 30
    health_check_timeout: 5
    max_parallel_updates: 1
    auto_rollback: true

  consul:                                      # NEW: services Nomad does not run, registered in Consul
    external_services:                         # (the seed's register-external-services.sh; docs/nomad.md)
      - id: wazuh-master
        name: wazuh-registration
        tags: [wazuh, security, external]
        address: 100.88.163.85
        port: 1515
        check: {tcp: "100.88.163.85:1515", interval: 30s, timeout: 5s}
      - id: jenkins-master
        name: jenkins-master
        tags: [jenkins, ci, external]
        address: 100.65.138.128
        port: 8059
        meta: {domain: jenkins.cybermonkey.dev}
        check: {http: "http://100.65.138.128:8059/login", interval: 30s, timeout: 5s}

  backup:
    enabled: true
    schedule: "0 3 * * *"
    retention_days: 30
    targets: [caddy_data, authentik_database, nginx_configs]

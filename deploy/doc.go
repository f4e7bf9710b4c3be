// Package deploy holds sluice's deploy files — the compose cluster, the Helm
// chart, the systemd units, Prometheus' and Grafana's provisioning — and, in
// its tests, the checks that they are what docs/deploy.md says: the chart lints
// and renders the objects it promises, the units verify, the compose file and
// the image build where a container tool works, and every sluice config they
// carry is one sluice accepts.
package deploy

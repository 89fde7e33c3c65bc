# home-manager on a darwin host (eval-home.nix with an aarch64-darwin package set): the
# launchd agent `agenix` instead of the systemd user service, and paths under macOS's per-user
# `$TMPDIR` instead of `$XDG_RUNTIME_DIR`; see cases.nix for how they are used.
{
  lib,
  files ? name: "/var/lib/ragenix-test/${name}.age",
  package ? null,
}:
let
  eq =
    what: got: want:
    lib.optional (got != want) "${what}: got ${builtins.toJSON got}, want ${builtins.toJSON want}";

  # Started at load (login, and each time home-manager reloads a changed plist), restarted by
  # launchd until it succeeds, running the installer on the manifest with $TMPDIR set.
  agent =
    r:
    eq "systemd user service" r.service null
    ++ eq "agent enabled" (r.agent.enable or null) true
    ++ eq "RunAtLoad" (r.agent.config.RunAtLoad or null) true
    ++ eq "KeepAlive.SuccessfulExit" (r.agent.config.KeepAlive.SuccessfulExit or null) false
    ++ eq "launch agents linked" r.launchAgentsLinked true
    ++ eq "ProgramArguments" (r.agent.config.ProgramArguments or null) [
      "/bin/sh"
      "-c"
      ''TMPDIR="$(/usr/bin/getconf DARWIN_USER_TEMP_DIR)" && export TMPDIR && exec "$0" "$1"''
      "${r.package}/bin/ragenix-install"
      r.manifest.path
    ]
    ++ eq "manifest platform and mode" [ r.manifestJson.platform r.manifestJson.mode ] [
      "darwin"
      "home"
    ];
in
{
  defaults = {
    configuration = {
      age.secrets.token.file = files "token";
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ agent r
      ++ eq "secretsDir" r.age.secretsDir "\${TMPDIR}/agenix"
      ++ eq "secretsMountPoint" r.age.secretsMountPoint "\${TMPDIR}/agenix.d"
      ++ eq "secret path" r.age.secrets.token.path "\${TMPDIR}/agenix/token"
      ++ eq "manifest secretsDir" r.manifestJson.secretsDir "\${TMPDIR}/agenix";
  };

  # Paths the user chose are kept as written; the installer expands them when it runs.
  custom = {
    configuration = {
      age.secretsDir = "$HOME/.agenix";
      age.secrets.token = {
        file = files "token";
        path = "~/token";
      };
    };
    expect =
      r:
      eq "failed assertions" r.failedAssertions [ ]
      ++ agent r
      ++ eq "secret path" r.age.secrets.token.path "~/token"
      ++ eq "manifest secretsDir" r.manifestJson.secretsDir "$HOME/.agenix";
  };
}

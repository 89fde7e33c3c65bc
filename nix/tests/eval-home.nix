# Evaluates each case of home-cases.nix with hm-module.nix inside home-manager's own module
# list and `lib`; returns, per case, `result` and `failures` like eval-nixos.nix.
{
  homeManager,
  pkgs,
  lib ? pkgs.lib,
  module ? ../../hm-module.nix,
  params ? { },
  only ? null,
  # Cases of the caller's own instead of home-cases.nix's.
  cases ? null,
}:
let
  all = if cases != null then cases else import ./home-cases.nix ({ inherit lib; } // params);

  user = {
    home.username = "alice";
    home.homeDirectory = "/home/alice";
    home.stateVersion = "24.05";
  };

  evaluate =
    configuration:
    let
      hm = import (homeManager + "/modules") {
        inherit pkgs lib;
        configuration = {
          imports = [
            module
            user
            package
            configuration
          ];
        };
      };
      c = hm.config;
      entry =
        e:
        removeAttrs e [
          "_module"
          "file"
        ]
        // lib.optionalAttrs (e ? file) { file = toString e.file; };
    in
    {
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
      inherit (c) warnings;
      package = toString c.age.ragenix.package;
      # The file the installer runs on, and the build-time check its build runs.
      manifest = {
        path = toString c.age.ragenix.manifest;
        inherit (c.age.ragenix.manifest) checkPhase;
      };
      age = {
        identityPaths = map toString c.age.identityPaths;
        inherit (c.age) secretsDir secretsMountPoint placeholder;
        secrets = lib.mapAttrs (_: entry) c.age.secrets;
        templates = lib.mapAttrs (_: entry) c.age.templates;
      };
      service = c.systemd.user.services.agenix or null;
      # macOS: the launchd agent as declared, and whether home-manager links it.
      agent =
        let
          a = c.launchd.agents.agenix or null;
        in
        if a == null then
          null
        else
          {
            inherit (a) enable;
            config = lib.filterAttrs (_: v: v != null) a.config;
          };
      launchAgentsLinked = lib.hasInfix "LaunchAgents" (c.home.extraBuilderCommands or "");
      manifestJson = builtins.fromJSON (builtins.readFile c.age.ragenix.manifest);
      unitLinked = c.xdg.configFile ? "systemd/user/agenix.service";
      activation = lib.filter (lib.hasInfix "agenix") (lib.attrNames c.home.activation);
    };

  # The installer under test, when the caller has one.
  package = lib.optionalAttrs (params.package or null != null) {
    age.ragenix.package = params.package;
  };

  selected = if only == null then all else lib.getAttrs only all;
in
lib.mapAttrs (
  _: case:
  let
    result = evaluate case.configuration;
  in
  {
    inherit result;
    failures = case.expect result;
  }
) selected

# A stand-in for nixpkgs' package set, just enough for the real NixOS and home-manager module
# systems to evaluate our modules without a binary cache. Nothing here is ever built: every
# package is a fake derivation with a made-up store path, except the trivial writers, which
# use builtins.toFile (needs `nix-instantiate --read-write-mode`) so that files our modules
# generate, such as the manifest, really exist and can be run or read by the tests.
{
  lib,
  # The nixpkgs tree the module systems read `pkgs.path` from (nixos/modules/misc/*.nix).
  path,
}:
{
  localSystem ? { system = "x86_64-linux"; },
  system ? localSystem.system or localSystem,
  config ? { },
  overlays ? [ ],
  crossSystem ? null,
  ...
}:
let
  platform = lib.systems.elaborate (if builtins.isString system then system else "x86_64-linux");

  # A derivation-shaped value: enough for lib.getExe, "${pkg}/bin/x", isDerivation, meta checks.
  fake =
    name: extra:
    let
      self = {
        type = "derivation";
        inherit name;
        pname = name;
        version = "0";
        outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
        drvPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha1" name)}-${name}.drv";
        outputs = [ "out" ];
        outputName = "out";
        out = self;
        bin = self;
        lib = self;
        dev = self;
        man = self;
        meta = {
          mainProgram = name;
          platforms = lib.platforms.all;
        };
        passthru = { };
        override = _: self;
        withPackages = _: self;
        overrideAttrs = _: self;
        system = platform.system;
      }
      // extra;
    in
    self;

  # Files our modules write must exist (the tests read and run them); the `checkPhase` is kept
  # so a test can run it against the written file, as a real build would.
  writeTextFile =
    {
      name,
      text,
      executable ? false,
      destination ? "",
      checkPhase ? "",
      ...
    }:
    fake name {
      outPath = builtins.toFile name text;
      inherit text checkPhase executable destination;
    };
  writeText = name: text: writeTextFile { inherit name text; };
  writeScript = name: text: writeTextFile { inherit name text; executable = true; };

  names = import ./pkgs-names.nix;

  linuxPackages = fake "linux-packages" {
    extend = _: linuxPackages;
    kernel = fake "linux" {
      version = "6.6.0";
      modDirVersion = "6.6.0";
      features = { };
      config = {
        isYes = _: true;
        isNo = _: false;
        isModule = _: false;
        isSet = _: true;
        isEnabled = _: true;
        getValue = _: null;
      };
    };
  };
  formatNames = [
    "json"
    "yaml"
    "yaml_1_1"
    "yaml_1_2"
    "toml"
    "ini"
    "iniWithGlobalSection"
    "keyValue"
    "gitIni"
    "systemd"
    "elixirConf"
    "php"
    "lua"
    "nixConf"
    "hocon"
    "libconfig"
    "javaProperties"
    "pythonVars"
    "xml"
    "cdn"
    "plist"
  ];

  pkgs =
    lib.genAttrs names (n: fake n { })
    // {
      inherit lib writeTextFile writeText writeScript;
      inherit path;
      # The platform predicates (isLinux, isx86_64...) as stdenv has them.
      stdenv = fake "stdenv" (
        lib.filterAttrs (n: _: lib.hasPrefix "is" n) platform
        // {
          hostPlatform = platform;
          buildPlatform = platform;
          targetPlatform = platform;
          cc = fake "cc" { libc = fake "glibc" { }; };
          shell = "/bin/sh";
          mkDerivation = a: fake (a.name or "${a.pname}-${a.version or "0"}") { };
        }
      );
      stdenvNoCC = pkgs.stdenv;
      buildPlatform = platform;
      hostPlatform = platform;
      targetPlatform = platform;
      system = platform.system;
      runtimeShell = "/bin/sh";
      runCommand = name: env: script: fake name (env // { buildCommand = script; });
      runCommandLocal = pkgs.runCommand;
      runCommandNoCC = pkgs.runCommand;
      writeShellScript = name: text: writeScript name "#!/bin/sh\n${text}";
      writeShellScriptBin = name: text: fake name { };
      writeScriptBin = name: text: fake name { };
      writeTextDir = path: text: fake (baseNameOf path) { };
      writeShellApplication = a: fake a.name { };
      symlinkJoin = a: fake a.name { };
      buildEnv = a: fake a.name { };
      linkFarm = name: _: fake name { };
      callPackage =
        fn: args:
        let
          f = if builtins.isFunction fn then fn else import fn;
        in
        # Required arguments this stand-in lacks become fake packages; optional ones keep
        # their defaults unless we have them.
        f (
          lib.mapAttrs (n: _: pkgs.${n} or (fake n { })) (
            lib.filterAttrs (n: optional: !optional || pkgs ? ${n}) (builtins.functionArgs f)
          )
          // args
        );
      rustPlatform.buildRustPackage = a: fake a.pname { };
      buildPackages = pkgs;
      __splicedPackages = pkgs;
      pkgsStatic = pkgs;
      pkgsi686Linux = pkgs;
      runCommandCC = pkgs.runCommand;
      pkgsBuildBuild = pkgs;
      pkgsBuildHost = pkgs;
      # Attributes of packages that modules read at evaluation time.
      dhcpcd = fake "dhcpcd" { enablePrivSep = false; };
      shadow = fake "shadow" {
        shellPath = "/bin/nologin";
        su = pkgs.shadow;
      };
      libxcrypt = fake "libxcrypt" { enabledCryptSchemeIds = [ "y" "6" ]; };
      bashInteractive = fake "bash" { shellPath = "/bin/bash"; };
      linuxPackages = linuxPackages;
      linuxPackages_latest = linuxPackages;
      appendOverlays = _: pkgs;
      extend = _: pkgs;
      # Option declarations use `(pkgs.formats.X { }).type`, so it must be a real type.
      formats = lib.genAttrs formatNames (
        _: _: {
          type = lib.types.anything;
          generate = name: value: writeText name (builtins.toJSON value);
          lib.types.atom = lib.types.anything;
        }
      );
    };
in
pkgs

# The ragenix package: the `ragenix` CLI, an `agenix` symlink for scripts that call agenix, and
# `ragenix-install`, which the NixOS and home-manager modules run.
{
  lib,
  rustPlatform,
  age,
  openssh,
}:
let
  cargoToml = lib.importTOML ./Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "ragenix";
  inherit (cargoToml.package) version;

  src = lib.cleanSourceWith {
    src = ./.;
    filter =
      path: type:
      !(type == "directory" && builtins.elem (baseNameOf path) [
        "target"
        ".git"
      ]);
  };

  cargoLock.lockFile = ./Cargo.lock;

  # Tests needing root, mount namespaces or nix-instantiate report a skip in the sandbox.
  nativeCheckInputs = [
    age
    openssh
  ];

  postInstall = ''
    ln -s ragenix $out/bin/agenix
  '';

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.mit;
    mainProgram = "ragenix";
    platforms = lib.platforms.unix;
  };
}

# The ragenix package: the `ragenix` CLI, an `agenix` symlink for scripts that call agenix, and
# `ragenix-install`, which the NixOS and home-manager modules run.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
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

  nativeBuildInputs = [ installShellFiles ];

  # Tests needing root, mount namespaces or nix-instantiate report a skip in the sandbox.
  nativeCheckInputs = [
    age
    openssh
  ];

  # Completions and the man page come from the clap definition, so the built binary prints
  # them; a cross build cannot run it and goes without.
  postInstall =
    ''
      ln -s ragenix $out/bin/agenix
    ''
    + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      installShellCompletion --cmd ragenix \
        --bash <($out/bin/ragenix --completions bash) \
        --zsh <($out/bin/ragenix --completions zsh) \
        --fish <($out/bin/ragenix --completions fish)
      $out/bin/ragenix --man > ragenix.1
      installManPage ragenix.1
    '';

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.mit;
    mainProgram = "ragenix";
    platforms = lib.platforms.unix;
  };
}

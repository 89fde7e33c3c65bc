//! The Nix side: every `.nix` file parses, and `nix/manifest.nix` evaluated by real Nix yields
//! manifests the installer accepts and installs.

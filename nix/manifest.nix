# Evaluated module options -> the installer's manifest (an attrset; the modules write it with
# builtins.toJSON). Pure and builtins-only so tests can evaluate it with plain nix-instantiate;
# plain attrsets with missing fields get agenix's defaults here as in the modules.
{
  secrets ? { },
  templates ? { },
  identityPaths ? [ ],
  secretsDir ? "/run/agenix",
  secretsMountPoint ? "/run/agenix.d",
  # "system" (NixOS: ramfs, owners) or "home" (home-manager: $VAR paths expanded at run time)
  mode ? "system",
  # "linux" or "darwin" (nix-darwin: a RAM disk made with hdiutil, the admin group)
  platform ? "linux",
  keepGenerations ? 1,
  dirGroup ? (
    if mode != "system" then
      null
    else if platform == "darwin" then
      "admin"
    else
      "keys"
  ),
  pluginPaths ? [ ],
  restartListFile ? null,
  reloadListFile ? null,
}:
let
  unique = builtins.foldl' (seen: u: if builtins.elem u seen then seen else seen ++ [ u ]) [ ];

  common = defaultPath: e: {
    path = e.path or defaultPath;
    mode = e.mode or "0400";
    owner = e.owner or "0";
    group = e.group or "0";
    symlink = e.symlink or true;
    # A service reading the file as a credential has a copy of it: it must restart to see a
    # change (nix/credentials.nix).
    restartUnits = unique ((e.restartUnits or [ ]) ++ (e.credentials or [ ]));
    reloadUnits = e.reloadUnits or [ ];
  };

  secret =
    attr: s:
    let
      name = s.name or attr;
    in
    {
      inherit name;
      # Interpolating a path copies the .age file to the store (as agenix does); strings
      # (files outside the store) are kept as they are.
      file = "${s.file}";
      format = s.format or "binary";
      key = s.key or null;
    }
    // common "${secretsDir}/${name}" s;

  template =
    attr: t:
    let
      name = t.name or attr;
    in
    {
      inherit name;
      content = t.content;
    }
    // common "${secretsDir}/templates/${name}" t;
in
{
  version = 1;
  inherit
    mode
    platform
    secretsDir
    secretsMountPoint
    keepGenerations
    dirGroup
    restartListFile
    reloadListFile
    ;
  # toString, not interpolation: identities must never be copied into the store.
  identityPaths = map toString identityPaths;
  pluginPaths = map toString pluginPaths;
  secrets = builtins.attrValues (builtins.mapAttrs secret secrets);
  templates = builtins.attrValues (builtins.mapAttrs template templates);
}

# Build-time check that every `age.identityPaths` entry exists when the installer runs (NixOS).
# At activation only file systems needed for boot are mounted, and impermanence's
# `environment.persistence` bind mounts come later: a key there fails the boot with "no
# identity". Each such entry gets an assertion naming the option to set and the path to use.
# Returns a list of assertions.
{
  lib,
  config,
  # utils.fsNeededForBoot of the NixOS being evaluated (which file systems stage 1 mounts).
  fsNeededForBoot,
  # false for the service variant: there RequiresMountsFor= waits for the mounts.
  checkMounts,
}:
let
  inherit (lib) concatMap filter hasPrefix;

  # "/a/b/" -> "/a/b"; "/" stays.
  trim = p: if p != "/" && lib.hasSuffix "/" p then trim (lib.removeSuffix "/" p) else p;
  under = dir: p: dir == "/" || p == dir || hasPrefix "${dir}/" p;

  mounts = lib.mapAttrsToList (attr: fs: {
    inherit attr fs;
    at = trim fs.mountPoint;
  }) (lib.filterAttrs (_: fs: fs.enable or true) config.fileSystems);

  # The file system a path lives on: the longest mount point above it.
  mountOf =
    p:
    let
      candidates = filter (m: under m.at p) mounts;
    in
    if candidates == [ ] then
      null
    else
      builtins.foldl' (
        best: m: if builtins.stringLength m.at > builtins.stringLength best.at then m else best
      ) (builtins.head candidates) candidates;

  # impermanence's entries, as { storage, path, isDir }: strings or submodules with `file` /
  # `directory`; user entries are relative to the user's home.
  persistence = lib.filterAttrs (_: v: v.enable or true) (config.environment.persistence or { });
  persisted = concatMap (
    attr:
    let
      v = persistence.${attr};
      storage = trim (v.persistentStoragePath or attr);
      item = isDir: base: x: {
        inherit storage isDir;
        path = trim "${base}${if isDir then x.directory or x else x.file or x}";
      };
      ofUser =
        user: u:
        let
          home = trim (if u.home or null != null then u.home else config.users.users.${user}.home);
        in
        map (item false "${home}/") (u.files or [ ]) ++ map (item true "${home}/") (u.directories or [ ]);
    in
    map (item false "") (v.files or [ ])
    ++ map (item true "") (v.directories or [ ])
    ++ concatMap (user: ofUser user v.users.${user}) (builtins.attrNames (v.users or { }))
  ) (builtins.attrNames persistence);

  bindMountOf =
    p:
    lib.findFirst (e: if e.isDir then under e.path p else e.path == p) null persisted;

  # When the installer runs, the mount `m` is there only if stage 1 mounted it.
  missingMount = m: checkMounts && m != null && !(fsNeededForBoot m.fs);
  neededForBoot = m: "fileSystems.${builtins.toJSON m.attr}.neededForBoot = true";

  check =
    path:
    let
      p = toString path;
      bind = bindMountOf p;
      mount = mountOf p;
    in
    if bind != null then
      let
        instead = "${bind.storage}${p}";
        insteadMount = mountOf instead;
      in
      {
        assertion = false;
        message =
          "age.identityPaths: ${p} is bind-mounted from environment.persistence.${builtins.toJSON bind.storage} "
          + "only after activation, so the installer would find no identity there; "
          + "list ${builtins.toJSON instead} in age.identityPaths instead"
          + lib.optionalString (missingMount insteadMount) " and set ${neededForBoot insteadMount}"
          + ".";
      }
    else
      {
        assertion = !(missingMount mount);
        message =
          "age.identityPaths: ${p} is on ${builtins.toJSON mount.at} (fileSystems.${builtins.toJSON mount.attr}), "
          + "which is not mounted yet when secrets are installed at activation; set ${neededForBoot mount}.";
      };
in
map check config.age.identityPaths

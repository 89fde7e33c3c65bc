# `age.secrets.<n>.credentials` and `age.templates.<n>.credentials` (NixOS): each listed service
# gets `LoadCredential=<credentialName>:<path>` and, in the service variant, is ordered after
# the installer. The restart on change comes from the manifest (nix/manifest.nix adds the units
# to restartUnits). Returns `assertions` and `services` (for systemd.services).
{
  lib,
  cfg,
  # The secrets come from agenix-install-secrets.service rather than the activation script.
  useService,
}:
let
  inherit (lib) concatMap filter hasSuffix removeSuffix;

  entries =
    map (n: {
      option = "age.secrets.${builtins.toJSON n}";
      e = cfg.secrets.${n};
    }) (builtins.attrNames cfg.secrets)
    ++ map (n: {
      option = "age.templates.${builtins.toJSON n}";
      e = cfg.templates.${n};
    }) (builtins.attrNames cfg.templates);

  # One per (entry, unit): what goes into that unit.
  loads = concatMap (
    { option, e }:
    map (unit: {
      inherit option unit;
      name = e.credentialName;
      inherit (e) path;
    }) e.credentials
  ) (filter ({ e, ... }: e.credentials != [ ]) entries);

  # systemd's credential_name_valid(): a file name and an fd name, i.e. printable ASCII without
  # `/` and `:`, at most 255 bytes, not `.` or `..`. A leading space is valid for systemd but
  # cannot be written in a unit file (the parser strips it), so it is refused too.
  validName =
    n:
    builtins.match "[!-.0-9;-~][ -.0-9;-~]*" n != null
    && builtins.stringLength n <= 255
    && n != "."
    && n != "..";

  # Unit files expand `%` specifiers in both halves of LoadCredential=; a line cannot hold a
  # control character, and trailing blanks would be stripped.
  escape = lib.replaceStrings [ "%" ] [ "%%" ];
  validPath = p: builtins.match "[^[:cntrl:]]*[^[:cntrl:][:space:]]" p != null;

  isService = u: hasSuffix ".service" u && u != ".service";

  # A credential name given twice to one unit: systemd would keep only one of them.
  duplicates = lib.filterAttrs (_: l: builtins.length l > 1) (
    lib.groupBy (l: builtins.toJSON [ l.unit l.name ]) loads
  );

  assertions =
    map (l: {
      assertion = validName l.name;
      message = "${l.option}.credentialName: ${builtins.toJSON l.name} is not a valid systemd credential name (printable ASCII without `/` and `:`, not starting with a space, at most 255 characters, not `.` or `..`); set ${l.option}.credentialName.";
    }) (lib.unique (map (l: { inherit (l) option name; }) loads))
    ++ map (l: {
      assertion = isService l.unit;
      message = "${l.option}.credentials: ${builtins.toJSON l.unit} is not a service (`<name>.service`); LoadCredential= is only set on services.";
    }) loads
    ++ map (l: {
      assertion = validPath l.path;
      message = "${l.option}.path: ${builtins.toJSON l.path} cannot be written in a LoadCredential= line (a control character or trailing blank).";
    }) (lib.unique (map (l: { inherit (l) option path; }) loads))
    ++ lib.mapAttrsToList (_: ls: {
      assertion = false;
      message = "${lib.concatMapStringsSep " and " (l: l.option) ls} give the same credential name ${builtins.toJSON (builtins.head ls).name} to ${(builtins.head ls).unit}; set a different credentialName on one of them.";
    }) duplicates;

  services = lib.mkMerge (
    map (
      l:
      lib.optionalAttrs (isService l.unit) {
        ${removeSuffix ".service" l.unit} = {
          serviceConfig.LoadCredential = [ "${escape l.name}:${escape l.path}" ];
        }
        // lib.optionalAttrs useService {
          wants = [ "agenix-install-secrets.service" ];
          after = [ "agenix-install-secrets.service" ];
        };
      }
    ) loads
  );
in
{
  inherit assertions services;
}

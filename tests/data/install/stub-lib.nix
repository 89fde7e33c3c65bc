# Just enough of nixpkgs' `lib` to evaluate the modules' options and config skeleton with plain
# nix-instantiate (no nixpkgs here): option declarations become plain attrsets, mkIf/mkMerge
# become inspectable data. Used by tests/install/nix.rs.
let
  type = name: {
    inherit name;
    description = name;
  };
in
{
  types = {
    str = type "str";
    path = type "path";
    bool = type "bool";
    lines = type "lines";
    package = type "package";
    ints.positive = type "positive int";
    listOf = elem: type "listOf" // { inherit elem; };
    attrsOf = elem: type "attrsOf" // { inherit elem; };
    submodule = fn: type "submodule" // { inherit fn; };
    addCheck = t: _check: t;
  };
  mkOption = o: o // { _type = "option"; };
  mkEnableOption = _: {
    _type = "option";
    default = false;
  };
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkRenamedOptionModule = from: to: { renamed = { inherit from to; }; };
  literalExpression = text: { _type = "literalExpression"; inherit text; };
  optionalString = c: s: if c then s else "";
  filter = builtins.filter;
  mapAttrs = builtins.mapAttrs;
  mapAttrsToList = f: attrs: map (n: f n attrs.${n}) (builtins.attrNames attrs);
}

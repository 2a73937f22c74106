# The text NixOS writes for a `systemd.services.<name>` definition, for the golden
# unit tests/nix/golden/sprout-agent.service.
#
# What is nixpkgs' and what is ours: nixpkgs' lib (the NIXPKGS_LIB checkout) is used
# as is (makeBinPath, makeSearchPathOutput, attribute order, toJSON). The rendering
# itself is OUR TRANSCRIPTION of nixpkgs' nixos/lib/systemd-lib.nix (toOption,
# attrsToSection, the unitConfig module's [Unit] keys, serviceConfig's PATH,
# stage2ServiceConfig's default path, commonUnitText, serviceToUnit), because only
# nixpkgs' lib/ can be had here, not nixos/. Transcribed from nixpkgs master as
# stored at commit 013635633ffe11f70df1d639f563f21c42c1f778 (systemd-lib.nix).
# Left out, because sprout's guest module sets none of them: script/preStart/...
# (makeJobScript), reloadIfChanged, notSocketActivated, restart/reload triggers,
# startLimit*, requisite/bindsTo/partOf/conflicts/upholds, aliases. Also left out:
# systemd.globalEnvironment, which a real NixOS fills from other modules
# (LOCALE_ARCHIVE from i18n, TZDIR from time): a real unit has those two
# Environment lines more.
{ lib, pkgs }:
let
  inherit (lib) attrNames concatLists concatMapStrings concatStrings concatStringsSep isList
    makeBinPath makeSearchPathOutput mapAttrsToList optionalAttrs optionalString;

  toOption = x: if x == true then "true" else if x == false then "false" else toString x;

  attrsToSection = as: concatStrings (concatLists (mapAttrsToList
    (name: value: map (x: "${name}=${toOption x}\n") (if isList value then value else [ value ]))
    as));

  # systemd-lib.nix, unitConfig: the [Unit] keys made from the unit's options.
  unitKeys = def:
    let l = n: def.${n} or [ ]; in
    optionalAttrs (l "requires" != [ ]) { Requires = toString def.requires; }
    // optionalAttrs (l "wants" != [ ]) { Wants = toString def.wants; }
    // optionalAttrs (l "after" != [ ]) { After = toString def.after; }
    // optionalAttrs (l "before" != [ ]) { Before = toString def.before; }
    // optionalAttrs ((def.description or "") != "") { Description = def.description; }
    // optionalAttrs (l "documentation" != [ ]) { Documentation = toString def.documentation; }
    // optionalAttrs (l "onFailure" != [ ]) { OnFailure = toString def.onFailure; }
    // optionalAttrs (l "onSuccess" != [ ]) { OnSuccess = toString def.onSuccess; };

  # systemd-lib.nix, stage2ServiceConfig: the default path, mkAfter the unit's own.
  defaultPath = [ pkgs.coreutils pkgs.findutils pkgs.gnugrep pkgs.gnused pkgs.systemd ];
in
{
  # The unit file's text, as systemd-lib.nix's serviceToUnit makes it.
  serviceToUnit = def:
    let
      path = (def.path or [ ]) ++ defaultPath;
      env = (def.environment or { })
        // optionalAttrs (path != [ ]) { PATH = "${makeBinPath path}:${makeSearchPathOutput "bin" "sbin" path}"; };
      unitConfig = unitKeys def // (def.unitConfig or { });
    in
    "[Unit]\n${attrsToSection unitConfig}\n"
    + "[Service]\n"
    + concatMapStrings (n: optionalString (env.${n} != null) "Environment=${builtins.toJSON "${n}=${env.${n}}"}\n")
      (attrNames env)
    + optionalString (!(def.restartIfChanged or true)) "X-RestartIfChanged=false\n"
    + optionalString (!(def.stopIfChanged or true)) "X-StopIfChanged=false\n"
    + attrsToSection (def.serviceConfig or { })
    + optionalString ((def.wantedBy or [ ]) != [ ]) "\n[Install]\nWantedBy=${concatStringsSep " " def.wantedBy}\n";
}

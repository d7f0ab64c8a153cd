/**
 * The largest data object of a backup (a tar of files: base.tar.zst from the basebackup engine, a files-NNNNNN
 * bundle from the files engine): what a test damages to see a restore or verify catch it, whichever engine ran.
 */
export function largestDataObject(manifestText: string | Buffer): string {
  const manifest = JSON.parse(manifestText.toString()) as { objects: { name: string; encoding: string; content?: string; storedBytes: number }[] };
  const data = manifest.objects.filter((o) => o.encoding === 'tar+zstd' && o.content !== 'blocks').sort((a, b) => b.storedBytes - a.storedBytes);
  if (data.length === 0) throw new Error('the manifest names no data object');
  return data[0]!.name;
}

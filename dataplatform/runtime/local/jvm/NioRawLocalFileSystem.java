package dataplatform.local;

import java.io.File;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system with file permissions read and set through java.nio instead of
 * child processes (never deployed: on EMR and Glue, Hadoop has its native library).
 *
 * <p>Why: without Hadoop's native library (libhadoop.so is not on Maven Central, and pyspark
 * does not ship it), RawLocalFileSystem runs {@code chmod} for every file and folder it
 * creates and {@code ls -ld} for every permission it is asked, each a process forked from
 * the driver's JVM. Every file Spark writes goes through the local disk first (S3A's
 * staging committer uploads from there; file:// writes are local anyway), with its .crc
 * beside it: a rerun of the demo's house_sales curate (240 partitions) took 2,728 new
 * process ids on the machine, and 64 to 146 with this class. java.nio's
 * PosixFileAttributes and setPosixFilePermissions make the same calls (stat, chmod)
 * inside the JVM. What a caller sees is the same: the same permission bits,
 * owner, group, sizes and times, and FileNotFoundException for a missing path.
 */
public class NioRawLocalFileSystem extends RawLocalFileSystem {

  @Override
  public void setPermission(Path p, FsPermission permission) throws IOException {
    try {
      Files.setPosixFilePermissions(pathToFile(p).toPath(), posix(permission.toShort()));
    } catch (NoSuchFileException e) {
      throw new FileNotFoundException("File " + p + " does not exist");
    }
  }

  @Override
  public FileStatus getFileStatus(Path f) throws IOException {
    File file = pathToFile(f);
    PosixFileAttributes attributes;
    try {
      attributes = Files.readAttributes(file.toPath(), PosixFileAttributes.class);
    } catch (NoSuchFileException e) {
      throw new FileNotFoundException("File " + f + " does not exist");
    }
    return new FileStatus(
        file.length(),
        attributes.isDirectory(),
        1,
        getDefaultBlockSize(f),
        attributes.lastModifiedTime().toMillis(),
        attributes.lastAccessTime().toMillis(),
        new FsPermission(mode(attributes.permissions())),
        attributes.owner().getName(),
        attributes.group().getName(),
        new Path(file.getPath()).makeQualified(getUri(), getWorkingDirectory()));
  }

  /** A folder's children come from getFileStatus above; a file's own status too (the
   * parent class answers that one with its lazily loaded, ls-forking status). */
  @Override
  public FileStatus[] listStatus(Path f) throws IOException {
    File file = pathToFile(f);
    if (file.exists() && !file.isDirectory()) {
      return new FileStatus[] {getFileStatus(f)};
    }
    return super.listStatus(f);
  }

  // The nine permission bits, in the order of their octal value (0400 first)
  private static final PosixFilePermission[] BITS = {
    PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE,
    PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.GROUP_READ,
    PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
    PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE,
    PosixFilePermission.OTHERS_EXECUTE,
  };

  static Set<PosixFilePermission> posix(short mode) {
    Set<PosixFilePermission> permissions = EnumSet.noneOf(PosixFilePermission.class);
    for (int i = 0; i < BITS.length; i++) {
      if ((mode & (0400 >> i)) != 0) {
        permissions.add(BITS[i]);
      }
    }
    return permissions;
  }

  static short mode(Set<PosixFilePermission> permissions) {
    int mode = 0;
    for (int i = 0; i < BITS.length; i++) {
      if (permissions.contains(BITS[i])) {
        mode |= 0400 >> i;
      }
    }
    return (short) mode;
  }
}
